/**
 * The writer's digests computed on worker threads (agent/disk/hash-pool.ts):
 * the block digest as written (frames copied into shared blocks) and read
 * back (blocks read back as commits land), and the plain sha256 read back in
 * pieces, must equal the digest of the image for any frames, holes, commit
 * intervals and resume points, and the main-thread digest of the same disk.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { HashPool, type HashTask } from '../../agent/disk/hash-pool.ts';
import { ParallelBlockHasher } from '../../agent/disk/parallel-block-hasher.ts';
import { openImageWriter, type DigestMethod } from '../../agent/disk/writer.ts';
import { BlockSha256, DigestAlgorithm, DIGEST_BLOCK_BYTES } from '../../proto/digest/block-sha256.ts';
import { framesOf, sha256, withTempDir } from './disk-helpers.ts';

const MIB = 1024 * 1024;

/** A pool that counts what it is asked to hash, to see when blocks are read back. */
class CountingPool extends HashPool {
  fileTasks = 0;
  memoryTasks = 0;
  override digest(task: HashTask, signal?: AbortSignal): Promise<Uint8Array> {
    if (task.kind === 'file') this.fileTasks++;
    else this.memoryTasks++;
    return super.digest(task, signal);
  }
}

const pools: HashPool[] = [];
function pool(size: number): CountingPool {
  const created = new CountingPool(size);
  pools.push(created);
  return created;
}

afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

function blockDigest(image: Uint8Array): string {
  const hasher = new BlockSha256();
  hasher.update(image);
  return hasher.digest();
}

/** Random data with holes at random places, some spanning whole 4 MiB blocks. */
const imageArb = fc
  .record({
    size: fc.integer({ min: 1, max: 14 * MIB }),
    holes: fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 9 * MIB })), { maxLength: 4 }),
  })
  .map(({ size, holes }) => {
    const image = randomBytes(size);
    for (const [at, length] of holes) {
      const start = Math.min(size - 1, Math.floor(at * size));
      image.fill(0, start, Math.min(size, start + length));
    }
    return image;
  });

async function sparse(path: string, size: number): Promise<string> {
  await writeFile(path, '');
  await truncate(path, size);
  return path;
}

describe('digests on worker threads', () => {
  it('give the image digest for any frames, holes, commit interval and method, as the main thread does (property)', async () => {
    const workers = pool(2);
    await withTempDir(async (dir) => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          imageArb,
          fc.constantFrom(100_000, MIB, 3 * MIB + 512),
          fc.constantFrom(MIB, 5 * MIB, 64 * MIB),
          fc.constantFrom<DigestMethod>('read-back', 'as-written'),
          fc.constantFrom<DigestAlgorithm>(DigestAlgorithm.blocks, DigestAlgorithm.sha256),
          fc.boolean(),
          async (image, frameBytes, interval, digest, digestAlgorithm, knownZero) => {
            const expected = digestAlgorithm === DigestAlgorithm.blocks ? blockDigest(image) : sha256(image);
            const results: string[] = [];
            for (const hashPool of [workers, null]) {
              const disk = await sparse(join(dir, `d${run++}`), image.length + 4096);
              const writer = await openImageWriter(disk, {
                imageSize: image.length,
                fsyncIntervalBytes: interval,
                digest,
                digestAlgorithm,
                hashPool,
                ...(knownZero ? { knownZeroFrom: 0 } : {}),
              });
              for (const frame of framesOf(image, frameBytes)) await writer.write(frame);
              results.push((await writer.finish()).sha256);
            }
            expect(results).toEqual([expected, expected]);
          },
        ),
        { numRuns: 40 },
      );
    });
  }, 120_000);

  it('reads back a resumed image from offset 0, bytes of the earlier stream included (property)', async () => {
    const workers = pool(3);
    await withTempDir(async (dir) => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(imageArb, fc.double({ min: 0, max: 1, noNaN: true }), async (image, at) => {
          const disk = await sparse(join(dir, `r${run++}`), image.length);
          const resumeAt = Math.floor((image.length * at) / 512) * 512;
          // What an earlier stream committed, written directly.
          const handle = await open(disk, 'r+');
          await handle.write(image, 0, resumeAt, 0);
          await handle.close();
          const writer = await openImageWriter(disk, {
            imageSize: image.length,
            resumeOffset: resumeAt,
            fsyncIntervalBytes: MIB,
            digestAlgorithm: DigestAlgorithm.blocks,
            hashPool: workers,
          });
          for (const frame of framesOf(image, MIB, resumeAt)) await writer.write(frame);
          expect((await writer.finish()).sha256).toBe(blockDigest(image));
        }),
        { numRuns: 15 },
      );
    });
  }, 120_000);

  it('reads blocks back while the image is still streaming, and a wrong byte on the target shows', async () => {
    const workers = pool(1);
    await withTempDir(async (dir) => {
      const image = randomBytes(5 * DIGEST_BLOCK_BYTES);
      const disk = await sparse(join(dir, 'd'), image.length);
      const writer = await openImageWriter(disk, {
        imageSize: image.length,
        fsyncIntervalBytes: 2 * MIB,
        digestAlgorithm: DigestAlgorithm.blocks,
        hashPool: workers,
      });
      const frames = framesOf(image, MIB);
      for (const frame of frames.slice(0, 13)) await writer.write(frame);
      // 13 MiB written and commits every 2 MiB: the first two blocks are committed and handed out.
      expect(workers.fileTasks).toBeGreaterThanOrEqual(2);
      // Something corrupts the last block on the target before it is committed.
      for (const frame of frames.slice(13)) await writer.write(frame);
      const handle = await open(disk, 'r+');
      await handle.write(Buffer.from([(image[19 * MIB] ?? 0) ^ 0xff]), 0, 1, 19 * MIB);
      await handle.close();
      const result = await writer.finish();
      expect(result.sha256).not.toBe(blockDigest(image));
      expect(result.sha256).toBe(blockDigest(await readFile(disk)));
      expect(workers.fileTasks).toBe(5);
    });
  });

  it('never reads a block that is all skipped zeros, and hashes as-written blocks in shared memory it reuses', async () => {
    const workers = pool(2);
    await withTempDir(async (dir) => {
      const image = Buffer.alloc(40 * MIB);
      randomBytes(MIB).copy(image, 0);
      randomBytes(MIB).copy(image, 33 * MIB);
      const disk = await sparse(join(dir, 'z'), image.length);
      const readBack = await openImageWriter(disk, {
        imageSize: image.length,
        knownZeroFrom: 0,
        digestAlgorithm: DigestAlgorithm.blocks,
        hashPool: workers,
      });
      for (const frame of framesOf(image, MIB)) await readBack.write(frame);
      expect((await readBack.finish()).sha256).toBe(blockDigest(image));
      // Blocks 0 and 8 hold data; the other eight are skipped zeros.
      expect(workers.fileTasks).toBe(2);

      const hasher = new ParallelBlockHasher(workers, 3);
      const bytes: Buffer[] = [];
      for (let i = 0; i < 10; i++) {
        const piece = randomBytes(i === 9 ? 1000 : DIGEST_BLOCK_BYTES);
        bytes.push(piece);
        await hasher.update(piece);
      }
      expect(await hasher.digest()).toBe(blockDigest(Buffer.concat(bytes)));
      expect(hasher.blocksAllocated).toBeLessThanOrEqual(3);
      expect(workers.memoryTasks).toBe(10);
    });
  });

  it('says a frame is done only when nothing reads its bytes any more: scribbling them then changes nothing (property)', async () => {
    const workers = pool(2);
    await withTempDir(async (dir) => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          imageArb,
          fc.constantFrom<DigestMethod>('read-back', 'as-written'),
          fc.constantFrom(1, 4),
          async (image, digest, inFlight) => {
            const disk = await sparse(join(dir, `o${run++}`), image.length);
            const writer = await openImageWriter(disk, {
              imageSize: image.length,
              fsyncIntervalBytes: MIB,
              digest,
              digestAlgorithm: DigestAlgorithm.blocks,
              hashPool: workers,
              maxWritesInFlight: inFlight,
            });
            let done = 0;
            let dataFrames = 0;
            for (const frame of framesOf(image, MIB)) {
              if (frame.data === undefined) {
                await writer.write(frame);
                continue;
              }
              dataFrames++;
              // A copy per frame, as the receive pool hands it out; scribbled over when released.
              const data = Buffer.from(frame.data);
              await writer.write({ offset: frame.offset, data, onDone: () => (done++, data.fill(0xff)) });
            }
            const result = await writer.finish();
            expect(done).toBe(dataFrames);
            expect(result.sha256).toBe(blockDigest(image));
            expect((await readFile(disk)).equals(image)).toBe(true);
          },
        ),
        { numRuns: 20 },
      );
    });
  }, 120_000);

  it('fails with a typed error when the target cannot be read back, and drops the work of an abandoned stream', async () => {
    const workers = pool(1);
    await withTempDir(async (dir) => {
      const missing = workers.digest({ kind: 'file', path: join(dir, 'nope'), start: 0, end: 10, zeros: [] });
      await expect(missing).rejects.toMatchObject({ name: 'TargetIoError', message: expect.stringMatching(/hashing failed: .*ENOENT/) });
      const short = join(dir, 'short');
      await writeFile(short, randomBytes(100));
      await expect(workers.digest({ kind: 'file', path: short, start: 0, end: 200, zeros: [] })).rejects.toMatchObject({
        message: expect.stringMatching(/target ends at 100, before 200/),
      });

      const abort = new AbortController();
      abort.abort(new Error('stream superseded'));
      await expect(workers.digest({ kind: 'file', path: short, start: 0, end: 100, zeros: [] }, abort.signal)).rejects.toThrow(
        /superseded/,
      );
      await expect(workers.fileSha256(short, 100, [], abort.signal)).rejects.toThrow(/superseded/);
      const content = await readFile(short);
      const withZeros = Buffer.concat([content.subarray(0, 10), Buffer.alloc(10), content.subarray(20)]);
      expect(await workers.fileSha256(short, 100, [10, 20])).toBe(createHash('sha256').update(withZeros).digest('hex'));
      expect(workers.pending).toBe(0);
    });
  });
});
