import { randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { eraseFull, eraseMetadata, metadataRanges, MIB } from '../../agent/disk/erase.ts';
import { openTarget } from '../../agent/disk/target.ts';
import { withTempDir } from './disk-helpers.ts';

const allZero = (bytes: Uint8Array): boolean => bytes.every((byte) => byte === 0);

describe('erase', () => {
  it('metadata erase zeroes the first and the last MiB and nothing else', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      const before = randomBytes(5 * MIB + 4096);
      await writeFile(disk, before);
      const target = await openTarget(disk, { write: true });
      const ranges = await eraseMetadata(target).finally(() => target.handle.close());
      expect(ranges).toEqual([
        { offset: 0, length: MIB },
        { offset: before.length - MIB, length: MIB },
      ]);
      const after = await readFile(disk);
      expect(allZero(after.subarray(0, MIB))).toBe(true);
      expect(allZero(after.subarray(after.length - MIB))).toBe(true);
      expect(Buffer.compare(after.subarray(MIB, after.length - MIB), before.subarray(MIB, before.length - MIB))).toBe(0);
      expect(metadataRanges(MIB + 5)).toEqual([{ offset: 0, length: MIB + 5 }]);
    });
  });

  it('full erase writes zeros over the whole target in chunks and reports progress', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      await writeFile(disk, randomBytes(3 * MIB + 512));
      const progress: number[] = [];
      const target = await openTarget(disk, { write: true });
      await eraseFull(target, {
        method: 'write-zeros',
        chunkBytes: MIB,
        onProgress: (done, total) => {
          expect(total).toBe(3 * MIB + 512);
          progress.push(done);
        },
      }).finally(() => target.handle.close());
      expect(progress).toEqual([MIB, 2 * MIB, 3 * MIB, 3 * MIB + 512]);
      expect(allZero(await readFile(disk))).toBe(true);
    });
  });

  it('full erase of a regular file frees its blocks by truncation', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      await writeFile(disk, randomBytes(4 * MIB));
      const target = await openTarget(disk, { write: true });
      await eraseFull(target).finally(() => target.handle.close());
      const stats = await stat(disk);
      expect(stats.size).toBe(4 * MIB);
      expect(stats.blocks).toBe(0);
      expect(allZero(await readFile(disk))).toBe(true);
    });
  });
});
