/**
 * The initramfs writer against GNU cpio (Debian `cpio`), which reads newc
 * as the kernel does: names, kinds, modes, link targets and contents come
 * back as written, and the same entries always give the same bytes.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { cpioArchive, CpioError, type CpioEntry } from '../../ramdisk/cpio.ts';
import { requireBinary } from '../support/ipmi-sim.ts';

const run = promisify(execFile);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

const ENTRIES: CpioEntry[] = [
  { kind: 'file', path: 'etc/bm/modules', mode: 0o644, data: text('kernel/drivers/net/virtio_net.ko\n') },
  { kind: 'dir', path: 'etc', mode: 0o755 },
  { kind: 'dir', path: 'etc/bm', mode: 0o755 },
  { kind: 'symlink', path: 'sh', target: 'busybox' },
  { kind: 'file', path: 'init', mode: 0o755, data: text('#!/bin/sh\necho hi\n') },
  { kind: 'chardev', path: 'console', mode: 0o600, major: 5, minor: 1 },
  { kind: 'file', path: 'empty', mode: 0o600, data: new Uint8Array(0) },
];

describe('newc cpio writer', () => {
  it('writes an archive GNU cpio lists and extracts with the same names, kinds, modes, targets and contents', async () => {
    requireBinary('cpio', 'cpio');
    const dir = await mkdtemp(path.join(tmpdir(), 'bm-cpio-'));
    try {
      const archive = path.join(dir, 'a.cpio');
      await writeFile(archive, cpioArchive(ENTRIES, 1_700_000_000));
      const { stdout } = await run('cpio', ['-it', '--quiet', '-F', archive]);
      expect(stdout.trim().split('\n')).toEqual(['console', 'empty', 'etc', 'etc/bm', 'etc/bm/modules', 'init', 'sh']);
      const verbose = (await run('cpio', ['-itv', '--quiet', '-F', archive])).stdout;
      expect(verbose).toMatch(/^crw------- .* 5,\s*1 .* console$/m);
      const out = path.join(dir, 'x');
      await run('sh', ['-c', `mkdir ${out} && cd ${out} && cpio -idm --quiet --no-absolute-filenames --no-preserve-owner < ${archive}`]);
      expect(await readFile(path.join(out, 'init'), 'utf8')).toBe('#!/bin/sh\necho hi\n');
      expect((await stat(path.join(out, 'init'))).mode & 0o777).toBe(0o755);
      expect((await stat(path.join(out, 'init'))).mtimeMs).toBe(1_700_000_000_000);
      expect(await readFile(path.join(out, 'etc/bm/modules'), 'utf8')).toBe('kernel/drivers/net/virtio_net.ko\n');
      expect(await readlink(path.join(out, 'sh'))).toBe('busybox');
      expect((await stat(path.join(out, 'empty'))).size).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('gives the same bytes whatever order the entries come in', () => {
    const a = cpioArchive(ENTRIES, 0);
    const b = cpioArchive([...ENTRIES].reverse(), 0);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(a.length % 4).toBe(0);
    expect(Buffer.from(a.subarray(0, 6)).toString()).toBe('070701');
    // The trailer ends the archive.
    expect(Buffer.from(a).toString('latin1')).toMatch(/TRAILER!!!\0+$/);
  });

  it('refuses absolute, empty-part, dot-dot and duplicate paths', () => {
    expect(() => cpioArchive([{ kind: 'dir', path: '/etc', mode: 0o755 }], 0)).toThrow(CpioError);
    expect(() => cpioArchive([{ kind: 'dir', path: 'a/../b', mode: 0o755 }], 0)).toThrow(/"a\/..\/b"/);
    expect(() => cpioArchive([{ kind: 'dir', path: 'a//b', mode: 0o755 }], 0)).toThrow(CpioError);
    expect(() =>
      cpioArchive(
        [
          { kind: 'dir', path: 'a', mode: 0o755 },
          { kind: 'symlink', path: 'a', target: 'b' },
        ],
        0,
      ),
    ).toThrow(/appears twice/);
  });
});
