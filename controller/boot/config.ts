/**
 * The `[boot]` section of bm.toml, as a zod fragment the main config schema
 * merges in. Values from BM_BOOT_* arrive as strings, hence the coercions.
 * Cross-field rules (full mode needs a range inside the netmask's network;
 * the server address must not lie in the range) are checked here too, so a
 * bad config fails at start with the key that is wrong.
 */
import { z } from 'zod';
import { intToIp, ipToInt, isIpv4 } from './dhcp/options.ts';
import { parseCidr } from './http/client-gate.ts';

const ipv4 = z.string().refine(isIpv4, 'expected a dotted IPv4 address');
const bool = z.preprocess((v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v), z.boolean());
const ipList = z.preprocess(
  (v) =>
    typeof v === 'string'
      ? v
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s.length > 0)
      : v,
  z.array(ipv4),
);
const cidrList = z.preprocess(
  (v) =>
    typeof v === 'string'
      ? v
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s.length > 0)
      : v,
  z.array(z.string().refine((c) => parseCidr(c) !== null, 'expected an IPv4 network such as 10.20.0.0/24')),
);
const port = z.coerce.number().int().min(1).max(65535);
const netmask = ipv4.refine((m) => {
  const n = ipToInt(m);
  return n !== 0 && ((~n >>> 0) & ((~n >>> 0) + 1)) === 0;
}, 'expected a contiguous netmask such as 255.255.255.0');

export const bootConfigSchema = z
  .object({
    /** The provisioning interface (documentation for operators; Node cannot bind to a device). */
    interface: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'expected an interface name of up to 15 characters')
      .default('eth0'),
    /** Our address on the provisioning segment: DHCP server id, next-server, iPXE URL host. */
    server_address: ipv4,
    /** Address the DHCP/TFTP sockets bind; 0.0.0.0 is needed to receive broadcasts. */
    bind_address: ipv4.default('0.0.0.0'),
    mode: z.enum(['full', 'proxy', 'off']).default('full'),
    dhcp_port: port.default(67),
    /** The PXE proxyDHCP port (proxy mode only). */
    proxy_port: port.default(4011),
    /** Where replies to a relay agent (giaddr) go: 67 on a real relay. */
    relay_port: port.default(67),
    range_start: ipv4.optional(),
    range_end: ipv4.optional(),
    netmask: netmask.default('255.255.255.0'),
    router: ipv4.optional(),
    dns: ipList.default([]),
    lease_time_s: z.coerce
      .number()
      .int()
      .min(60)
      .max(7 * 86400)
      .default(3600),
    discovery: bool.default(false),
    tftp_root: z.string().min(1).default('/var/lib/bm/tftp'),
    tftp_port: port.default(69),
    tftp_max_window: z.coerce.number().int().min(1).max(1024).default(64),
    /** 1468 fills a 1500-byte Ethernet frame; larger blocks would be IP-fragmented. */
    tftp_max_block_size: z.coerce.number().int().min(512).max(65464).default(1468),
    ipxe_bios: z.string().min(1).default('undionly.kpxe'),
    ipxe_efi: z.string().min(1).default('ipxe.efi'),
    /** Where the iPXE binaries are copied from into tftp_root (Debian's `ipxe` package). */
    ipxe_source_dir: z.string().min(1).default('/usr/lib/ipxe'),
    /**
     * The API address agents call back, put on the ramdisk's kernel command
     * line; default http://<server_address>:<the API's port>.
     */
    api_url: z
      .string()
      .regex(/^https?:\/\/[A-Za-z0-9.:\-[\]]+\/?$/, 'expected http://host:port')
      .optional(),
    /**
     * In DHCP mode proxy or off (we hold no leases): the networks whose
     * addresses may fetch kernels and ramdisks from the HTTP boot port, as
     * "a.b.c.d/n". Default: the server address's own network (netmask).
     * In full mode only addresses holding a lease may.
     */
    provisioning_networks: cidrList.optional(),
    http_port: port.default(6386),
    http_root: z.string().min(1).default('/var/lib/bm/http'),
    deploy_kernel: z.string().min(1).default('deploy/vmlinuz'),
    deploy_ramdisk: z.string().min(1).default('deploy/initrd'),
    kernel_args: z
      .preprocess((v) => (typeof v === 'string' ? v.split(' ').filter((s) => s.length > 0) : v), z.array(z.string()))
      .default(['console=ttyS0', 'quiet']),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.mode !== 'full') return;
    if (!c.range_start) ctx.addIssue({ code: 'custom', path: ['range_start'], message: 'required when mode is "full"' });
    if (!c.range_end) ctx.addIssue({ code: 'custom', path: ['range_end'], message: 'required when mode is "full"' });
    if (!c.range_start || !c.range_end) return;
    const mask = ipToInt(c.netmask);
    const net = (ip: string): number => (ipToInt(ip) & mask) >>> 0;
    if (ipToInt(c.range_start) > ipToInt(c.range_end))
      ctx.addIssue({ code: 'custom', path: ['range_end'], message: `must not be below range_start ${c.range_start}` });
    if (net(c.range_start) !== net(c.server_address) || net(c.range_end) !== net(c.server_address)) {
      ctx.addIssue({
        code: 'custom',
        path: ['range_start'],
        message: `the range must lie in ${intToIp(net(c.server_address))}/${c.netmask}, the server address's network`,
      });
    }
  });

export type BootConfig = z.infer<typeof bootConfigSchema>;
