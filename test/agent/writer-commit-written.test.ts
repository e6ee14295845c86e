import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openImageWriter } from '../../agent/disk/writer.ts';
import { framesOf, imageWithHoles, sha256, withTempDir } from './disk-helpers.ts';

const MIB = 1024 * 1024;

describe('image writer, a broken stream', () => {
  it('commits what it wrote between commit intervals, and a writer resuming there completes the image', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      await writeFile(disk, '');
      await truncate(disk, 8 * MIB);
      const image = imageWithHoles(6 * MIB, [[2 * MIB, MIB]]);
      const frames = framesOf(image, 256 * 1024);
      const commits: number[] = [];
      const first = await openImageWriter(disk, {
        imageSize: image.length,
        knownZeroFrom: 0,
        fsyncIntervalBytes: 4 * MIB,
        onCommit: (offset) => void commits.push(offset),
      });
      // 4.5 MiB of the image, with no commit interval reached (the hole is skipped, not written).
      const cut = frames.findIndex((f) => f.offset >= 4.5 * MIB);
      for (const frame of frames.slice(0, cut)) await first.write(frame);
      expect(first.committedOffset).toBe(0);
      expect(await first.commitWritten()).toBe(4.5 * MIB);
      expect(commits).toEqual([4.5 * MIB]);
      await first.close();

      const second = await openImageWriter(disk, { imageSize: image.length, resumeOffset: 4.5 * MIB, fsyncIntervalBytes: 4 * MIB });
      for (const frame of frames.slice(cut)) await second.write(frame);
      const result = await second.finish();
      expect(result.sha256).toBe(sha256(image));
      expect(sha256((await readFile(disk)).subarray(0, image.length))).toBe(sha256(image));
    });
  });
});
