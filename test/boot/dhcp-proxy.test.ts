/**
 * proxyDHCP beside an existing DHCP server: dnsmasq (DHCP only, no PXE)
 * assigns the address, our proxy supplies the boot file, and the PXE client
 * ends up with both. Three namespaces on one bridge: dnsmasq, ours, client.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, startRunner, udhcpc, type Runner } from './dhcp-peers.ts';
import { createLan, nsExec, nsSpawn, stopChild, waitForLine, type Lan, type Leaf } from './netns.ts';
import { requirePeer } from './peers.ts';

const PXE_MAC = '52:54:00:cc:00:01';

let lan: Lan;
let client: Leaf;
let dnsmasq: ChildProcess | null = null;
let runner: Runner | null = null;
let dir: string;

beforeAll(async () => {
  const dnsmasqBin = requirePeer('/usr/sbin/dnsmasq');
  requirePeer('/usr/sbin/udhcpc');
  dir = await mkdtemp(path.join(tmpdir(), 'bm-proxy-'));
  lan = await createLan();
  const dhcpLeaf = await lan.addLeaf('dnsm', '10.95.0.2/24');
  const ours = await lan.addLeaf('ours', '10.95.0.3/24');
  client = await lan.addLeaf('cli', null, PXE_MAC);
  dnsmasq = nsSpawn(dhcpLeaf.ns, dnsmasqBin, [
    '--no-daemon',
    '--conf-file=/dev/null',
    '--port=0',
    '--no-ping',
    '--dhcp-range=10.95.0.100,10.95.0.150,255.255.255.0,1h',
    '--dhcp-authoritative',
    `--dhcp-leasefile=${path.join(dir, 'leases')}`,
    `--pid-file=${path.join(dir, 'dnsmasq.pid')}`,
    '--log-facility=-',
    '--log-dhcp',
  ]);
  await waitForLine(dnsmasq, /DHCP, IP range/);
  runner = await startRunner(ours.ns, {
    dhcp: {
      mode: 'proxy',
      serverAddress: '10.95.0.3',
      discovery: false,
      nodes: [{ mac: PXE_MAC, nodeUuid: '33333333-3333-4333-8333-333333333333', fixedAddress: null }],
    },
  });
});

afterAll(async () => {
  await stopChild(runner?.child);
  await stopChild(dnsmasq);
  await lan?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('proxyDHCP beside dnsmasq', () => {
  it('a PXE client gets its address from dnsmasq and its boot file from our proxy', async () => {
    const { stdout } = await nsExec(client.ns, process.execPath, [path.join(repoRoot, 'test/boot/pxe-client.ts'), PXE_MAC, '0']);
    const got = JSON.parse(stdout) as {
      offers: { yiaddr: string; serverId: string; file: string }[];
      addressAck: { type: number; yiaddr: string; serverId: string; file: string } | null;
      proxyAck: { type: number; yiaddr: string; siaddr: string; file: string; vendorClass: string; echoedUuid: boolean } | null;
    };
    // Two offers: an address from dnsmasq (no boot file), boot info from us (no address).
    expect(got.offers).toContainEqual(expect.objectContaining({ serverId: '10.95.0.2', file: '' }));
    expect(got.offers).toContainEqual(
      expect.objectContaining({ serverId: '10.95.0.3', yiaddr: '0.0.0.0', file: 'undionly.kpxe', siaddr: '10.95.0.3' }),
    );
    expect(got.addressAck).toMatchObject({ type: 5, serverId: '10.95.0.2' });
    expect(got.addressAck!.yiaddr).toMatch(/^10\.95\.0\.1[0-5]\d$/);
    expect(got.proxyAck).toMatchObject({
      type: 5,
      yiaddr: '0.0.0.0',
      siaddr: '10.95.0.3',
      file: 'undionly.kpxe',
      vendorClass: 'PXEClient',
      echoedUuid: true,
    });
    const stats = (await runner!.stats()).dhcp!;
    expect(stats.proxyOffers).toBeGreaterThanOrEqual(1);
    expect(stats.proxyAcks).toBeGreaterThanOrEqual(1);
  });

  it('gives iPXE (user class) its HTTP script URL through the proxy', async () => {
    const { stdout } = await nsExec(client.ns, process.execPath, [path.join(repoRoot, 'test/boot/pxe-client.ts'), PXE_MAC, '0', 'ipxe']);
    const got = JSON.parse(stdout) as { proxyAck: { file: string } | null; addressAck: { yiaddr: string } | null };
    expect(got.addressAck?.yiaddr).toMatch(/^10\.95\.0\.1[0-5]\d$/);
    expect(got.proxyAck?.file).toBe(`http://10.95.0.3:6386/boot/${PXE_MAC}.ipxe`);
  });

  it('stays silent to a plain DHCP client, which gets its lease from dnsmasq alone', async () => {
    const before = (await runner!.stats()).dhcp!;
    const r = await udhcpc(client.ns, []);
    expect(r.ok, r.output).toBe(true);
    expect(r.bound!.serverid).toBe('10.95.0.2');
    expect(r.bound!.ip).toMatch(/^10\.95\.0\.1[0-5]\d$/);
    const after = (await runner!.stats()).dhcp!;
    expect(after.proxyOffers).toBe(before.proxyOffers);
  });
});
