/**
 * Starts the boot services from the validated `[boot]` config: DHCP (in the
 * configured mode), TFTP and HTTP boot. The caller supplies the seams (store
 * backends, content sources); defaults serve directories from the config.
 */
import type { BootBackend } from './backend.ts';
import type { AgentCa, BootPlanConfig, BootStateSource } from './boot-plan.ts';
import type { BootConfig } from './config.ts';
import { DhcpServer } from './dhcp/server.ts';
import { DirectoryBlobSource, type BlobSource } from './http/blob-source.ts';
import { HttpBootServer } from './http/server.ts';
import { LeaseGate, NetworkGate, parseCidr, type BootClientGate, type LeaseHolders } from './http/client-gate.ts';
import { intToIp, ipToInt } from './dhcp/options.ts';
import { DirectoryFileSource, type TftpFileSource } from './tftp/file-source.ts';
import { IpxeOverlayFileSource } from './tftp/ipxe-file-source.ts';
import { TftpServer } from './tftp/server.ts';
import { registerStatsMetrics } from './metrics.ts';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { MetadataSource } from './http/metadata.ts';

export interface BootServiceDeps {
  readonly backend: BootBackend;
  readonly states: BootStateSource;
  /** The controller's API/callback URL written into kernel command lines. */
  readonly controllerUrl: string;
  /** With API TLS on: the CA agents verify the controller with (served at /ca.pem, fingerprint on the command line). */
  readonly agentCa?: AgentCa;
  readonly files?: TftpFileSource;
  readonly blobs?: BlobSource;
  /** Overrides config.discovery (the controller also honours [discovery] enabled). */
  readonly discovery?: boolean;
  /** The controller's logger for DHCP, TFTP and HTTP boot; silent when absent. */
  readonly log?: Logger;
  /** Who may fetch kernels and ramdisks; default from the config (see bootClientGate). */
  readonly clients?: BootClientGate;
  /** Prometheus registry served at /metrics on the HTTP boot port; the boot counters join it. */
  readonly metrics?: Registry;
  /** The metadata service's documents, by source address. */
  readonly metadata?: MetadataSource;
}

/** What iPXE scripts are made from (also what `node diagnose` renders them with). */
export function bootPlanConfig(config: BootConfig, controllerUrl: string, discovery: boolean, agentCa?: AgentCa): BootPlanConfig {
  return {
    ...(agentCa ? { agentCa } : {}),
    httpBase: `http://${config.server_address}:${config.http_port}`,
    controllerUrl,
    defaultKernel: config.deploy_kernel,
    defaultRamdisk: config.deploy_ramdisk,
    discovery,
    kernelArgs: config.kernel_args,
  };
}

export interface BootServices {
  readonly dhcp: DhcpServer;
  readonly tftp: TftpServer;
  readonly http: HttpBootServer;
  /** What was bound (null: DHCP off). */
  readonly ports: { readonly dhcp: number | null; readonly proxy: number | null; readonly tftp: number; readonly http: number };
  close(): Promise<void>;
}

/**
 * Full mode: lease holders. Proxy/off: the configured provisioning networks,
 * by default the server address's own network.
 */
export function bootClientGate(config: BootConfig, leases: LeaseHolders): BootClientGate {
  if (config.mode === 'full') return new LeaseGate(leases);
  const networks = config.provisioning_networks ?? [
    `${intToIp((ipToInt(config.server_address) & ipToInt(config.netmask)) >>> 0)}/${prefixLength(config.netmask)}`,
  ];
  return new NetworkGate(networks.map((n) => parseCidr(n)!));
}

function prefixLength(netmask: string): number {
  let n = ipToInt(netmask);
  let bits = 0;
  while (n & 0x80000000) {
    bits++;
    n = (n << 1) >>> 0;
  }
  return bits;
}

export async function startBootServices(config: BootConfig, deps: BootServiceDeps): Promise<BootServices> {
  const discovery = deps.discovery ?? config.discovery;
  const dhcp = new DhcpServer({
    mode: config.mode,
    backend: deps.backend,
    serverAddress: config.server_address,
    bindAddress: config.bind_address,
    serverPort: config.dhcp_port,
    proxyPort: config.proxy_port,
    relayPort: config.relay_port,
    ...(config.range_start && config.range_end
      ? {
          range: {
            start: config.range_start,
            end: config.range_end,
            netmask: config.netmask,
            router: config.router ?? null,
            dns: config.dns,
          },
        }
      : {}),
    leaseTimeSec: config.lease_time_s,
    discovery,
    boot: { httpPort: config.http_port, biosFile: config.ipxe_bios, efiFile: config.ipxe_efi },
    ...(deps.log ? { log: deps.log } : {}),
  });
  const tftp = new TftpServer({
    source:
      deps.files ??
      (await IpxeOverlayFileSource.create(new DirectoryFileSource(config.tftp_root), config.ipxe_source_dir, [
        config.ipxe_bios,
        config.ipxe_efi,
      ])),
    address: config.bind_address,
    port: config.tftp_port,
    maxBlockSize: config.tftp_max_block_size,
    maxWindowSize: config.tftp_max_window,
    ...(deps.log ? { log: deps.log } : {}),
  });
  const http = new HttpBootServer({
    states: deps.states,
    clients: deps.clients ?? bootClientGate(config, deps.backend),
    blobs: deps.blobs ?? new DirectoryBlobSource(config.http_root),
    plan: bootPlanConfig(config, deps.controllerUrl, discovery, deps.agentCa),
    address: config.bind_address,
    port: config.http_port,
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
    ...(deps.log ? { log: deps.log } : {}),
    ...(deps.metadata ? { metadata: deps.metadata } : {}),
  });
  if (deps.metrics) {
    registerStatsMetrics(deps.metrics, {
      dhcp: () => ({ ...dhcp.stats }),
      tftp: () => ({ ...tftp.stats }),
      http_boot: () => ({ ...http.stats }),
    });
  }
  const started: { close(): Promise<void> }[] = [];
  let ports: BootServices['ports'];
  try {
    const tftpBound = await tftp.start();
    started.push(tftp);
    const httpBound = await http.start();
    started.push(http);
    const dhcpBound = await dhcp.start();
    started.push(dhcp);
    ports = { dhcp: dhcpBound.server, proxy: dhcpBound.proxy, tftp: tftpBound.port, http: httpBound.port };
  } catch (err) {
    for (const s of started.reverse()) await s.close().catch(() => undefined);
    throw err;
  }
  return {
    dhcp,
    tftp,
    http,
    ports,
    async close() {
      for (const s of started.reverse()) await s.close().catch(() => undefined);
    },
  };
}
