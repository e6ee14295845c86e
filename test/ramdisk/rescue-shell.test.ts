/**
 * The ramdisk's init when a step fails: booted by QEMU with no NIC at all,
 * it says on the console why it cannot go on and keeps a shell there that
 * answers commands (typed over the serial line).
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { stopChild } from '../boot/netns.ts';
import { requirePeer } from '../boot/peers.ts';
import { ensureRamdisk } from '../e2e/ensure-ramdisk.ts';

describe('deploy ramdisk init', () => {
  it('says why on the console and keeps a working shell when no NIC appears', { timeout: 400_000 }, async () => {
    const qemu = requirePeer('/usr/bin/qemu-system-x86_64');
    const ramdisk = await ensureRamdisk();
    const vm = spawn(
      qemu,
      [
        '-accel',
        'tcg',
        '-m',
        '1024',
        '-nographic',
        '-monitor',
        'none',
        '-no-user-config',
        '-nodefaults',
        '-serial',
        'stdio',
        '-no-reboot',
        '-kernel',
        ramdisk.kernelFile,
        '-initrd',
        ramdisk.initrdFile,
        '-append',
        'console=ttyS0 quiet',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    try {
      out = await new Promise<string>((resolve, reject) => {
        let asked = false;
        const timer = setTimeout(
          () => reject(new Error(`no answer from the rescue shell within 180 s; console:\n${out.slice(-3000)}`)),
          180_000,
        );
        vm.stdout.on('data', (d: Buffer) => {
          out += d.toString('latin1');
          if (!asked && /a shell follows/.test(out)) {
            asked = true;
            // The shell prints its prompt a moment after the init's line.
            setTimeout(() => vm.stdin.write('echo rescue-$((6*7)) && cat /proc/cmdline\n'), 1500);
          }
          if (/rescue-42\r?\n/.test(out)) {
            clearTimeout(timer);
            resolve(out);
          }
        });
        vm.once('exit', (code) => reject(new Error(`QEMU exited with ${code}; console:\n${out.slice(-3000)}`)));
      });
    } finally {
      await stopChild(vm, 'SIGKILL');
    }
    expect(out).toMatch(/ramdisk: \[[\d.]+\] loaded \d+ kernel modules/);
    expect(out).toMatch(/ramdisk: \[[\d.]+\] FAILED: no Ethernet interface appeared/);
    expect(out).toMatch(/a shell follows/);
    expect(out).toMatch(/rescue-42/);
  });
});
