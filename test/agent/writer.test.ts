import { randomBytes } from 'node:crypto';
import { readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { openImageWriter, type ImageFrame } from '../../agent/disk/writer.ts';
import { DiskTooSmallError, FrameError } from '../../agent/errors.ts';
import { framesOf, imageWithHoles, sha256, withTempDir } from './disk-helpers.ts';

const MIB = 1024 * 1024;

async function writeAll(path: string, frames: readonly ImageFrame[], options: Parameters<typeof openImageWriter>[1]) {
  const writer = await openImageWriter(path, options);
  for (const frame of frames) await writer.write(frame);
  return writer.finish();
}

describe('image writer', () => {
  it('writes data and zero runs into a fresh sparse file, skipping the zeros, and reads back the digest', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      const image = imageWithHoles(10 * MIB + 4097, [
        [MIB, 3 * MIB],
        [8 * MIB, MIB],
      ]);
      await truncate(await writeFile(disk, '').then(() => disk), 16 * MIB);
      const commits: number[] = [];
      const result = await writeAll(disk, framesOf(image, 256 * 1024), {
        imageSize: image.length,
        knownZeroFrom: 0,
        fsyncIntervalBytes: 2 * MIB,
        onCommit: (offset) => void commits.push(offset),
      });
      expect(result.sha256).toBe(sha256(image));
      expect(result.digestMethod).toBe('read-back');
      expect(result.zeroBytesSkipped).toBe(4 * MIB);
      expect(result.bytesWritten).toBe(image.length - 4 * MIB);
      expect(result.committedOffset).toBe(image.length);
      expect(commits.at(-1)).toBe(image.length);
      expect(commits).toEqual([...commits].sort((a, b) => a - b));
      const onDisk = await readFile(disk);
      expect(onDisk.length).toBe(16 * MIB);
      expect(sha256(onDisk.subarray(0, image.length))).toBe(sha256(image));
      // The skipped runs stayed holes: the file uses less than the image's length.
      expect((await stat(disk)).blocks * 512).toBeLessThan(image.length);
    });
  });

  it('writes the zero runs when the target holds old data, and the as-written digest agrees', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      await writeFile(disk, randomBytes(6 * MIB));
      const image = imageWithHoles(5 * MIB, [
        [0, MIB + 17],
        [4 * MIB, MIB],
      ]);
      const result = await writeAll(disk, framesOf(image, 300_000), {
        imageSize: image.length,
        digest: 'as-written',
        zeroChunkBytes: 64 * 1024,
      });
      expect(result.digestMethod).toBe('as-written');
      expect(result.sha256).toBe(sha256(image));
      expect(result.zeroBytesSkipped).toBe(0);
      expect(sha256((await readFile(disk)).subarray(0, image.length))).toBe(sha256(image));
    });
  });

  it('resumes from the committed offset after a writer is abandoned mid-stream', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      await truncate(await writeFile(disk, '').then(() => disk), 12 * MIB);
      const image = imageWithHoles(12 * MIB, [
        [2 * MIB, 2 * MIB],
        [9 * MIB, 3 * MIB],
      ]);
      const frames = framesOf(image, 512 * 1024);
      // Syncs overlap the writes, at most one in flight: with a 1 MiB interval
      // the second sync waits for the first, so something is acknowledged.
      let acknowledged = 0;
      const first = await openImageWriter(disk, {
        imageSize: image.length,
        knownZeroFrom: 0,
        fsyncIntervalBytes: MIB,
        onCommit: (offset) => void (acknowledged = offset),
      });
      for (const frame of frames.slice(0, 15)) await first.write(frame);
      expect(acknowledged).toBe(first.committedOffset);
      const touchedUpTo = first.nextOffset;
      await first.close(); // the stream broke: no finish, no final sync
      expect(acknowledged).toBeGreaterThan(0);
      expect(acknowledged).toBeLessThan(touchedUpTo);
      // What the target holds past the committed offset is unknown after a
      // crash; make it garbage so a resume that trusted it would be caught.
      const garbage = randomBytes(touchedUpTo - acknowledged + MIB);
      const handle = await (await import('node:fs/promises')).open(disk, 'r+');
      await handle.write(garbage, 0, garbage.length, acknowledged);
      await handle.close();

      const resumed = framesOf(image, 512 * 1024, acknowledged);
      const second = await openImageWriter(disk, { imageSize: image.length, resumeOffset: acknowledged, fsyncIntervalBytes: 3 * MIB });
      for (const frame of resumed) await second.write(frame);
      const result = await second.finish();
      expect(result.sha256).toBe(sha256(image));
      expect(result.digestMethod).toBe('read-back');
    });
  });

  it('a writer resumed in the same process may skip zeros past where the abandoned one wrote', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      await truncate(await writeFile(disk, '').then(() => disk), 8 * MIB);
      const image = imageWithHoles(8 * MIB, [[5 * MIB, 3 * MIB]]);
      const frames = framesOf(image, MIB);
      const first = await openImageWriter(disk, { imageSize: image.length, knownZeroFrom: 0, fsyncIntervalBytes: 2 * MIB });
      for (const frame of frames.slice(0, 3)) await first.write(frame);
      await first.close();
      expect(first.committedOffset).toBe(2 * MIB);
      expect(first.readsAsZerosFrom).toBe(3 * MIB);
      const second = await openImageWriter(disk, {
        imageSize: image.length,
        resumeOffset: first.committedOffset,
        ...(first.readsAsZerosFrom === undefined ? {} : { knownZeroFrom: first.readsAsZerosFrom }),
      });
      for (const frame of framesOf(image, MIB, first.committedOffset)) await second.write(frame);
      const result = await second.finish();
      expect(result.sha256).toBe(sha256(image));
      expect(result.zeroBytesSkipped).toBe(3 * MIB);
    });
  });

  it('refuses out-of-order, overlapping, gapped and past-the-end frames without writing them', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      await writeFile(disk, new Uint8Array(64 * 1024));
      const writer = await openImageWriter(disk, { imageSize: 32 * 1024 });
      const data = new Uint8Array(4096).fill(7);
      await writer.write({ offset: 0, data });
      await writer.write({ offset: 4096, data });
      const problem = async (frame: ImageFrame) => {
        const error = await writer.write(frame).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(FrameError);
        return (error as FrameError).problem;
      };
      expect(await problem({ offset: 0, data })).toBe('out-of-order');
      expect(await problem({ offset: 6000, data })).toBe('overlap');
      expect(await problem({ offset: 12288, data })).toBe('gap');
      expect(await problem({ offset: 8192, zeroLength: 32 * 1024 })).toBe('past-image-end');
      expect(await problem({ offset: 8192, data, zeroLength: 4096 })).toBe('malformed');
      // The stream is still usable after a refused frame.
      await writer.write({ offset: 8192, zeroLength: 24 * 1024 });
      const result = await writer.finish();
      const expected = new Uint8Array(32 * 1024);
      expected.fill(7, 0, 8192);
      expect(result.sha256).toBe(sha256(expected));
      expect((await readFile(disk)).subarray(8192).every((byte) => byte === 0)).toBe(true);
    });
  });

  it('refuses a target too small for the image before writing a byte', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      const before = randomBytes(MIB);
      await writeFile(disk, before);
      const mtimeBefore = (await stat(disk)).mtimeMs;
      const error = await openImageWriter(disk, { imageSize: MIB + 512 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DiskTooSmallError);
      expect((error as DiskTooSmallError).context).toMatchObject({ diskSize: MIB, imageSize: MIB + 512 });
      expect(sha256(await readFile(disk))).toBe(sha256(before));
      expect((await stat(disk)).mtimeMs).toBe(mtimeBefore);
    });
  });

  it('refuses to finish an incomplete image, and an as-written digest for a resumed writer', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      await writeFile(disk, new Uint8Array(8192));
      const writer = await openImageWriter(disk, { imageSize: 8192 });
      await writer.write({ offset: 0, data: new Uint8Array(4096) });
      await expect(writer.finish()).rejects.toThrow(/image incomplete/);
      await expect(openImageWriter(disk, { imageSize: 8192, resumeOffset: 4096, digest: 'as-written' })).rejects.toThrow(/read-back/);
    });
  });

  it('any split of an image into frames, any fsync interval, any resume point: the digest is the image digest', async () => {
    await withTempDir(async (dir) => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 200_000 }),
          fc.array(fc.tuple(fc.nat(200_000), fc.nat(60_000)), { maxLength: 5 }),
          fc.integer({ min: 4096, max: 70_000 }),
          fc.integer({ min: 16_384, max: 100_000 }),
          fc.double({ min: 0, max: 1, noNaN: true }),
          async (size, holes, frameBytes, interval, stopAt) => {
            const disk = join(dir, `disk-${run++}.img`);
            await writeFile(disk, randomBytes(size + 100));
            const image = imageWithHoles(size, holes);
            const frames = framesOf(image, frameBytes);
            const first = await openImageWriter(disk, { imageSize: size, fsyncIntervalBytes: interval });
            for (const frame of frames.slice(0, Math.floor(frames.length * stopAt))) await first.write(frame);
            await first.close();
            const resumeAt = first.committedOffset;
            const second = await openImageWriter(disk, { imageSize: size, resumeOffset: resumeAt, fsyncIntervalBytes: interval });
            for (const frame of framesOf(image, frameBytes, resumeAt)) await second.write(frame);
            const result = await second.finish();
            expect(result.sha256).toBe(sha256(image));
          },
        ),
        { numRuns: 30 },
      );
    });
  });
});
