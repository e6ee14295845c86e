import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockSha256, DIGEST_BLOCK_BYTES, PlainSha256 } from './block-sha256.ts';

const run = promisify(execFile);
const MIB = 1024 * 1024;
const sha = (bytes: Uint8Array): Buffer => createHash('sha256').update(bytes).digest();

/** The definition, over bytes in memory. */
function reference(bytes: Uint8Array): string {
  const outer = createHash('sha256');
  for (let at = 0; at < bytes.length; at += DIGEST_BLOCK_BYTES) outer.update(sha(bytes.subarray(at, at + DIGEST_BLOCK_BYTES)));
  return outer.digest('hex');
}

/** Feeds `bytes` as pieces split at `cuts`, zero pieces as zero runs. */
function feed(hasher: BlockSha256 | PlainSha256, bytes: Uint8Array, cuts: readonly number[]): string {
  const points = [...new Set([0, ...cuts.map((c) => Math.min(c, bytes.length)), bytes.length])].sort((a, b) => a - b);
  for (let i = 0; i + 1 < points.length; i++) {
    const piece = bytes.subarray(points[i], points[i + 1]);
    if (piece.every((b) => b === 0)) hasher.zeros(piece.length);
    else hasher.update(piece);
  }
  return hasher.digest();
}

function imageWithHoles(size: number, holes: readonly [number, number][]): Buffer {
  const image = randomBytes(size);
  for (const [at, length] of holes) image.fill(0, at, at + length);
  return image;
}

describe('block sha256', () => {
  it('agrees with the shell recipe in its doc comment (split, sha256sum, basenc)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bm-digest-'));
    try {
      const image = imageWithHoles(13 * MIB + 777, [[2 * MIB, 9 * MIB]]);
      const file = join(dir, 'image.raw');
      await writeFile(file, image);
      const { stdout } = await run('sh', [
        '-c',
        `split -b 4M --filter='sha256sum | cut -c1-64 | tr a-f A-F | basenc --base16 -d' '${file}' | sha256sum`,
      ]);
      const hasher = new BlockSha256();
      expect(feed(hasher, image, [2 * MIB, 11 * MIB])).toBe(stdout.slice(0, 64));
      expect(hasher.length).toBe(image.length);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('whole blocks of zeros cost no hashing, and give the digest of the zeros', () => {
    const size = 64 * 1024 * MIB; // 64 GiB of zeros: hashed byte by byte, about 45 s here
    const hasher = new BlockSha256();
    hasher.zeros(size);
    const blocks = size / DIGEST_BLOCK_BYTES;
    const outer = createHash('sha256');
    const zero = sha(new Uint8Array(DIGEST_BLOCK_BYTES));
    for (let i = 0; i < blocks; i++) outer.update(zero);
    expect(hasher.digest()).toBe(outer.digest('hex'));
  });

  it('any split into data and zero runs gives the digest of the bytes, for both algorithms', () => {
    const image = imageWithHoles(9 * MIB + 3, [
      [MIB, 5 * MIB],
      [7 * MIB, 1000],
    ]);
    const expected = reference(image);
    const plain = createHash('sha256').update(image).digest('hex');
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: image.length }), { maxLength: 12 }), (cuts) => {
        expect(feed(new BlockSha256(), image, cuts)).toBe(expected);
        expect(feed(new PlainSha256(), image, cuts)).toBe(plain);
      }),
      { numRuns: 25 },
    );
  });
});
