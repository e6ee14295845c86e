/**
 * A QEMU VM (TCG) network-boots against our DHCP + TFTP + HTTP servers. Its
 * NIC ROM is iPXE (Debian's ipxe-qemu), which identifies itself with user
 * class "iPXE", so our DHCP hands it the HTTP URL of its per-MAC script; the
 * script (our renderer, node "deploying") loads a kernel and initrd over
 * HTTP. No Linux kernel is installed here, so the "kernel" is iPXE's own
 * Linux-bootable image (ipxe.lkrn, Debian's ipxe package): once booted, it
 * prints its banner again and then tries to run its kernel command line as
 * commands, which prints our command line (bm.controller=...) on the serial
 * log. Seeing our script's echo, both downloads, the second banner and our
 * command line proves DHCP → HTTP script → kernel + initrd over HTTP → boot
 * with the right command line.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startRunner, type Runner } from './dhcp-peers.ts';
import { createLan, ip, nsSpawn, stopChild, waitForLine, type Lan } from './netns.ts';
import { requirePeer } from './peers.ts';

const VM_MAC = '52:54:00:12:34:56';
const NODE = '5a5a5a5a-0000-4000-8000-000000000001';

let lan: Lan | null = null;
let runner: Runner | null = null;
let qemu: ChildProcess | null = null;
let dnsmasq: ChildProcess | null = null;
let dir = '';

async function waitForLog(file: string, patterns: readonly RegExp[], timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < deadline) {
    text = await readFile(file, 'latin1').catch(() => '');
    if (patterns.every((p) => p.test(text))) return text;
    // The firmware gave up on the network: no point waiting for the rest.
    if (/No bootable device/.test(text)) return text;
    if (qemu && qemu.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  return text;
}

async function bootVm(mode: 'full' | 'proxy'): Promise<{ text: string; stats: Record<string, Record<string, unknown>> }> {
  const qemuBin = requirePeer('/usr/bin/qemu-system-x86_64');
  requirePeer('/usr/lib/ipxe/qemu/pxe-virtio.rom');
  requirePeer('/usr/lib/ipxe/undionly.kpxe');
  const dnsmasqBin = mode === 'proxy' ? requirePeer('/usr/sbin/dnsmasq') : '';
  dir = await mkdtemp(path.join(tmpdir(), 'bm-qemu-'));
  const tftpRoot = path.join(dir, 'tftp');
  const httpRoot = path.join(dir, 'http');
  await mkdir(tftpRoot);
  await mkdir(path.join(httpRoot, 'deploy'), { recursive: true });
  await copyFile('/usr/lib/ipxe/undionly.kpxe', path.join(tftpRoot, 'undionly.kpxe'));
  await copyFile('/usr/lib/ipxe/ipxe.efi', path.join(tftpRoot, 'ipxe.efi'));
  await copyFile('/usr/lib/ipxe/ipxe.lkrn', path.join(httpRoot, 'deploy/vmlinuz'));
  await writeFile(path.join(httpRoot, 'deploy/initrd'), '#!ipxe\necho initrd\n');

  lan = await createLan();
  const srv = await lan.addLeaf('srv', '10.99.0.1/24');
  const tap = `tap${lan.id}`;
  await ip('-n', lan.hub, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
  await ip('-n', lan.hub, 'link', 'set', tap, 'master', 'br0');
  await ip('-n', lan.hub, 'link', 'set', tap, 'up');
  if (mode === 'proxy') {
    const other = await lan.addLeaf('dnsm', '10.99.0.2/24');
    dnsmasq = nsSpawn(other.ns, dnsmasqBin, [
      '--no-daemon',
      '--conf-file=/dev/null',
      '--port=0',
      '--no-ping',
      '--dhcp-range=10.99.0.200,10.99.0.220,255.255.255.0,1h',
      `--dhcp-leasefile=${path.join(dir, 'dnsmasq.leases')}`,
      `--pid-file=${path.join(dir, 'dnsmasq.pid')}`,
      '--log-facility=-',
    ]);
    await waitForLine(dnsmasq, /DHCP, IP range/);
  }
  runner = await startRunner(srv.ns, {
    dhcp: {
      mode,
      serverAddress: '10.99.0.1',
      ...(mode === 'full' ? { range: { start: '10.99.0.100', end: '10.99.0.150', netmask: '255.255.255.0', router: null, dns: [] } } : {}),
      discovery: false,
      nodes: [{ mac: VM_MAC, nodeUuid: NODE, fixedAddress: null }],
      httpPort: 6386,
    },
    tftp: { root: tftpRoot, address: '0.0.0.0', port: 69 },
    http: {
      root: httpRoot,
      port: 6386,
      httpBase: 'http://10.99.0.1:6386',
      discovery: false,
      states: [
        {
          mac: VM_MAC,
          nodeUuid: NODE,
          provisionState: 'deploying',
          agentToken: 'agent_token_0123456789',
          deployKernel: null,
          deployRamdisk: null,
        },
      ],
      // Proxy mode: dnsmasq leases the addresses, so the segment is the rule.
      provisioningNetworks: ['10.99.0.0/24'],
    },
  });
  const log = path.join(dir, 'serial.log');
  qemu = spawn(
    'ip',
    [
      'netns',
      'exec',
      lan.hub,
      qemuBin,
      '-accel',
      'tcg',
      '-m',
      '256',
      '-nographic',
      '-monitor',
      'none',
      '-serial',
      `file:${log}`,
      '-boot',
      'n',
      '-netdev',
      `tap,id=n0,ifname=${tap},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=n0,mac=${VM_MAC}`,
      '-pidfile',
      path.join(dir, 'qemu.pid'),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const text = await waitForLog(log, [SCRIPT_ECHO, BOOTED], 240_000);
  return { text, stats: await runner.stats() };
}

async function cleanup(): Promise<void> {
  await stopChild(qemu, 'SIGKILL');
  await stopChild(runner?.child);
  await stopChild(dnsmasq);
  await lan?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
  qemu = runner = dnsmasq = lan = null;
  dir = '';
}

const SCRIPT_ECHO = new RegExp(`Booting the deploy ramdisk for node ${NODE}`);
// After the kernel booted: a second iPXE banner, then our command line as the booted kernel saw it.
const BOOTED =
  /images\/deploy\/vmlinuz\.\.\. ok[\s\S]*images\/deploy\/initrd\.\.\. ok[\s\S]*Open Source Network Boot Firmware[\s\S]*bm\.controller=http:\/\/10\.99\.0\.1:6386/;

describe('PXE boot of a QEMU VM', () => {
  afterEach(cleanup);

  it('full mode: boots through our DHCP, the HTTP iPXE script, and a kernel + initrd over HTTP', { timeout: 300_000 }, async () => {
    const { text, stats } = await bootVm('full');
    expect(text, `serial log:\n${text.slice(-3000)}\nserver stats: ${JSON.stringify(stats)}`).toMatch(SCRIPT_ECHO);
    expect(text).toMatch(/net0: 10\.99\.0\.1[0-5]\d\/255\.255\.255\.0/);
    expect(text).toMatch(/Filename: http:\/\/10\.99\.0\.1:6386\/boot\/52:54:00:12:34:56\.ipxe/);
    expect(text).toMatch(BOOTED);
    expect(stats.dhcp!.acks as number).toBeGreaterThanOrEqual(1);
    expect(stats.http!.scripts as number).toBeGreaterThanOrEqual(1);
    expect(stats.http!.blobs as number).toBeGreaterThanOrEqual(2);
  });

  it('proxy mode: dnsmasq gives the address, our proxyDHCP the boot file, and the VM boots', { timeout: 300_000 }, async () => {
    const { text, stats } = await bootVm('proxy');
    expect(text, `serial log:\n${text.slice(-3000)}\nserver stats: ${JSON.stringify(stats)}`).toMatch(SCRIPT_ECHO);
    // The address comes from dnsmasq's range, the boot file from us.
    expect(text).toMatch(/net0: 10\.99\.0\.2[0-2]\d\/255\.255\.255\.0/);
    expect(text).toMatch(/Filename: http:\/\/10\.99\.0\.1:6386\/boot\/52:54:00:12:34:56\.ipxe/);
    expect(text).toMatch(BOOTED);
    expect(stats.dhcp!.proxyOffers as number).toBeGreaterThanOrEqual(1);
  });
});
