/**
 * The writer's pipelined writes and its read-back digest that skips the
 * zero runs it left to the target's known zeros (agent/disk/writer.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sha256OfTarget } from '../../agent/disk/hash.ts';
import { MAX_SKIPPED_RANGES, SkippedRanges } from '../../agent/disk/skipped-ranges.ts';
import { openTarget } from '../../agent/disk/target.ts';
import { ImageWriter, openImageWriter } from '../../agent/disk/writer.ts';
import { framesOf, imageWithHoles, sha256, withTempDir } from './disk-helpers.ts';

const MIB = 1024 * 1024;

async function sparse(path: string, size: number): Promise<string> {
  await writeFile(path, '');
  await truncate(path, size);
  return path;
}

describe('skipped ranges', () => {
  it('merges runs that touch, keeps the others apart and refuses one that goes backwards', () => {
    const ranges = new SkippedRanges();
    ranges.add(0, 10);
    ranges.add(10, 20);
    ranges.add(30, 30);
    ranges.add(40, 50);
    expect([...ranges.ranges()]).toEqual([
      { start: 0, end: 20 },
      { start: 40, end: 50 },
    ]);
    expect(() => ranges.add(45, 60)).toThrow(RangeError);
  });

  it('stops recording at the cap instead of growing without bound', () => {
    const ranges = new SkippedRanges();
    for (let i = 0; i < MAX_SKIPPED_RANGES + 10; i++) ranges.add(i * 2, i * 2 + 1);
    expect(ranges.size).toBe(MAX_SKIPPED_RANGES);
    // Past the cap nothing more is added, not even a run that would have extended the last range.
    ranges.add(2 * MAX_SKIPPED_RANGES + 100, 2 * MAX_SKIPPED_RANGES + 200);
    expect(ranges.size).toBe(MAX_SKIPPED_RANGES);
  });
});

describe('read-back digest', () => {
  it('hashes the given zero ranges as zeros without reading them, and reads everything else', async () => {
    await withTempDir(async (dir) => {
      const file = join(dir, 't');
      const bytes = randomBytes(3 * MIB + 123);
      await writeFile(file, bytes);
      const handle = await open(file, 'r');
      try {
        const expected = Buffer.from(bytes);
        expected.fill(0, MIB, 2 * MIB);
        expected.fill(0, 3 * MIB, 3 * MIB + 100);
        const zeroRanges = [
          { start: MIB, end: 2 * MIB },
          { start: 3 * MIB, end: 3 * MIB + 100 },
        ];
        expect(await sha256OfTarget(handle, bytes.length, { zeroRanges, chunkBytes: 256 * 1024 })).toBe(sha256(expected));
        expect(await sha256OfTarget(handle, bytes.length)).toBe(sha256(bytes));
        await expect(
          sha256OfTarget(handle, bytes.length, {
            zeroRanges: [
              { start: 2 * MIB, end: 2 * MIB + 1 },
              { start: MIB, end: MIB + 1 },
            ],
          }),
        ).rejects.toThrow(/out of order/);
      } finally {
        await handle.close();
      }
    });
  });

  it('does not read back the runs it skipped on a known-zero target, but does read the ones it wrote', async () => {
    await withTempDir(async (dir) => {
      const image = imageWithHoles(8 * MIB, [[2 * MIB, 4 * MIB]]);
      const run = async (knownZeroFrom: number | undefined): Promise<{ sha: string; skipped: number }> => {
        const disk = await sparse(join(dir, `disk-${knownZeroFrom}`), 8 * MIB);
        // One write at a time: with writes in flight, the zeros written into the hole could land after the
        // scribble below and cover it (a race, not what this test is about).
        const writer = await openImageWriter(disk, {
          imageSize: image.length,
          maxWritesInFlight: 1,
          ...(knownZeroFrom === undefined ? {} : { knownZeroFrom }),
        });
        for (const frame of framesOf(image, MIB)) {
          await writer.write(frame);
          // Something else scribbles into the hole after the writer passed it: only a read shows it.
          if (frame.offset === 5 * MIB) {
            const handle = await open(disk, 'r+');
            await handle.write(Buffer.alloc(4096, 0xee), 0, 4096, 3 * MIB);
            await handle.close();
          }
        }
        const result = await writer.finish();
        return { sha: result.sha256, skipped: result.zeroBytesSkipped };
      };
      // Skipped on a known-zero target: hashed as zeros, so it agrees with the image.
      expect(await run(0)).toEqual({ sha: sha256(image), skipped: 4 * MIB });
      // Written as zeros: read back, so the scribble shows.
      const written = await run(undefined);
      expect(written.skipped).toBe(0);
      expect(written.sha).not.toBe(sha256(image));
      const onDisk = await readFile(join(dir, 'disk-undefined'));
      expect(written.sha).toBe(createHash('sha256').update(onDisk).digest('hex'));
    });
  });
});

describe('pipelined writes', () => {
  it('any number of writes in flight gives the same disk and digest', async () => {
    await withTempDir(async (dir) => {
      const image = imageWithHoles(6 * MIB + 5000, [
        [MIB, MIB],
        [4 * MIB + 3, 100_000],
      ]);
      for (const inFlight of [1, 2, 8]) {
        const disk = join(dir, `d${inFlight}`);
        await writeFile(disk, randomBytes(7 * MIB));
        const writer = await openImageWriter(disk, {
          imageSize: image.length,
          maxWritesInFlight: inFlight,
          fsyncIntervalBytes: MIB,
          digest: 'as-written',
        });
        for (const frame of framesOf(image, 200_000)) await writer.write(frame);
        const result = await writer.finish();
        expect(result.sha256).toBe(sha256(image));
        expect(sha256((await readFile(disk)).subarray(0, image.length))).toBe(sha256(image));
      }
    });
  });

  it('a write that fails in flight fails the writer: a later frame or finish() throws it', async () => {
    await withTempDir(async (dir) => {
      const disk = await sparse(join(dir, 'ro'), 4 * MIB);
      // Opened read-only: every write fails with EBADF, after write() has returned.
      const target = await openTarget(disk);
      try {
        const writer = new ImageWriter(target, { imageSize: 4 * MIB, maxWritesInFlight: 8 });
        const attempt = async (): Promise<void> => {
          for (const frame of framesOf(randomBytes(4 * MIB), MIB)) await writer.write(frame);
          await writer.finish();
        };
        await expect(attempt()).rejects.toMatchObject({ code: 'EBADF' });
      } finally {
        await target.handle.close();
      }
    });
  });
});
