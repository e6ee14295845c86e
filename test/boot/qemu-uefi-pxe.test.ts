/**
 * UEFI network boot on a stock Debian controller: a QEMU VM (TCG) with OVMF
 * firmware (Debian's `ovmf`) and a virtio NIC without an option ROM, so the
 * firmware's own PXE client runs (architecture 7). Our DHCP gives it
 * `ipxe.efi`, which our TFTP serves from /usr/lib/ipxe, where Debian ships it
 * as a link to /boot/ipxe.efi; that iPXE then asks again (user class iPXE),
 * gets the HTTP URL of its script, and runs it: the script's echo on the
 * serial log and the kernel and initrd fetched over HTTP prove the chain.
 * (The "kernel" is iPXE's own EFI binary: no Linux kernel is installed here.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startRunner, type Runner } from './dhcp-peers.ts';
import { createLan, ip, stopChild, type Lan } from './netns.ts';
import { requirePeer } from './peers.ts';

const VM_MAC = '52:54:00:12:34:e7';
const NODE = '5a5a5a5a-0000-4000-8000-0000000000e7';
const SCRIPT_ECHO = new RegExp(`Booting the deploy ramdisk for node ${NODE}`);
const FETCHED = /images\/deploy\/vmlinuz\.\.\. ok[\s\S]*images\/deploy\/initrd\.\.\. ok/;

let lan: Lan | null = null;
let runner: Runner | null = null;
let qemu: ChildProcess | null = null;
let dir = '';

afterEach(async () => {
  await stopChild(qemu, 'SIGKILL');
  await stopChild(runner?.child);
  await lan?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
  qemu = runner = lan = null;
  dir = '';
});

async function waitForLog(file: string, patterns: readonly RegExp[], timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < deadline) {
    text = await readFile(file, 'latin1').catch(() => '');
    if (patterns.every((p) => p.test(text))) return text;
    if (qemu && qemu.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  return text;
}

describe('UEFI PXE boot of a QEMU VM with OVMF', () => {
  it('boots through ipxe.efi (a Debian symlink) from our DHCP and TFTP to the HTTP iPXE script', { timeout: 300_000 }, async () => {
    const qemuBin = requirePeer('/usr/bin/qemu-system-x86_64');
    const code = requirePeer('/usr/share/OVMF/OVMF_CODE.fd');
    const vars = requirePeer('/usr/share/OVMF/OVMF_VARS.fd');
    requirePeer('/usr/lib/ipxe/ipxe.efi');
    dir = await mkdtemp(path.join(tmpdir(), 'bm-uefi-'));
    const tftpRoot = path.join(dir, 'tftp');
    const httpRoot = path.join(dir, 'http');
    await mkdir(tftpRoot);
    await mkdir(path.join(httpRoot, 'deploy'), { recursive: true });
    await copyFile('/usr/lib/ipxe/ipxe.efi', path.join(httpRoot, 'deploy/vmlinuz'));
    await writeFile(path.join(httpRoot, 'deploy/initrd'), '#!ipxe\necho initrd\n');
    // OVMF writes its variable store: each VM gets its own copy.
    const varsCopy = path.join(dir, 'OVMF_VARS.fd');
    await copyFile(vars, varsCopy);

    lan = await createLan();
    const srv = await lan.addLeaf('srv', '10.97.0.1/24');
    const tap = `tap${lan.id}`;
    await ip('-n', lan.hub, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
    await ip('-n', lan.hub, 'link', 'set', tap, 'master', 'br0');
    await ip('-n', lan.hub, 'link', 'set', tap, 'up');
    runner = await startRunner(srv.ns, {
      dhcp: {
        mode: 'full',
        serverAddress: '10.97.0.1',
        range: { start: '10.97.0.100', end: '10.97.0.150', netmask: '255.255.255.0', router: null, dns: [] },
        discovery: false,
        nodes: [{ mac: VM_MAC, nodeUuid: NODE, fixedAddress: null }],
        httpPort: 6386,
      },
      // tftp_root is empty: ipxe.efi can only come from Debian's package directory.
      tftp: { root: tftpRoot, address: '0.0.0.0', port: 69, ipxe: { dir: '/usr/lib/ipxe', names: ['undionly.kpxe', 'ipxe.efi'] } },
      http: {
        root: httpRoot,
        port: 6386,
        httpBase: 'http://10.97.0.1:6386',
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
        '512',
        '-nographic',
        '-monitor',
        'none',
        '-serial',
        `file:${log}`,
        '-drive',
        `if=pflash,format=raw,readonly=on,file=${code}`,
        '-drive',
        `if=pflash,format=raw,file=${varsCopy}`,
        '-netdev',
        `tap,id=n0,ifname=${tap},script=no,downscript=no`,
        // No option ROM: the firmware's own PXE client boots, not an iPXE ROM.
        '-device',
        `virtio-net-pci,netdev=n0,mac=${VM_MAC},romfile=`,
        '-pidfile',
        path.join(dir, 'qemu.pid'),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const text = await waitForLog(log, [SCRIPT_ECHO, FETCHED], 240_000);
    const stats = await runner.stats();
    const context = `serial log:\n${text.slice(-3000)}\nserver stats: ${JSON.stringify(stats)}`;
    expect(text, context).toMatch(SCRIPT_ECHO);
    // The firmware's PXE client started the chain, and the iPXE it loaded is the EFI build.
    expect(text).toMatch(/Start PXE over IPv4[\s\S]*NBP filename is ipxe\.efi/);
    expect(text).toMatch(/Features: .*EFI/);
    expect(text).toMatch(/Filename: http:\/\/10\.97\.0\.1:6386\/boot\/52:54:00:12:34:e7\.ipxe/);
    expect(text).toMatch(FETCHED);
    // Two DORAs: the firmware's (for ipxe.efi) and iPXE's (for the script URL).
    expect(stats.dhcp!.acks as number).toBeGreaterThanOrEqual(2);
    expect(stats.tftp!.transfersCompleted as number).toBeGreaterThanOrEqual(1);
    expect(stats.http!.scripts as number).toBeGreaterThanOrEqual(1);
  });
});
