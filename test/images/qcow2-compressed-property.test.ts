/**
 * Compressed qcow2 images, zlib and zstd, made by qemu-img from random disk
 * content: what we read must be byte-identical to `qemu-img convert -O raw`
 * of the same image, for any content, cluster size and codec.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawContentSha256 } from '../../controller/images/digest.ts';
import { openImageFile } from '../../controller/images/open.ts';
import { fileSha256, qemu } from './qemu-img.testutil.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bm-qcow2-compressed-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Fill = 'random' | 'text' | 'byte';
interface Region {
  readonly offset: number;
  readonly length: number;
  readonly fill: Fill;
}

const region = (size: number): fc.Arbitrary<Region> =>
  fc.record({
    offset: fc.nat(size - 1),
    length: fc.integer({ min: 1, max: 700 * KiB }),
    fill: fc.constantFrom<Fill>('random', 'text', 'byte'),
  });

function content(fill: Fill, length: number): Buffer {
  if (fill === 'random') return randomBytes(length);
  if (fill === 'byte') return Buffer.alloc(length, 0x5c);
  return Buffer.from('a deploy streams the image it was given. '.repeat(Math.ceil(length / 41))).subarray(0, length);
}

async function writeRaw(path: string, size: number, regions: readonly Region[]): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await handle.truncate(size);
    for (const r of regions) {
      const length = Math.min(r.length, size - r.offset);
      await handle.write(content(r.fill, length), 0, length, r.offset);
    }
  } finally {
    await handle.close();
  }
}

describe.each(['zlib', 'zstd'] as const)('compressed qcow2 (%s) from qemu-img', (codec) => {
  it('reads any content byte-identically to qemu-img convert -O raw (property)', async () => {
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(512, 4 * KiB, 64 * KiB, 2 * MiB),
        fc.integer({ min: 1, max: 6 * MiB }).chain((size) => fc.tuple(fc.constant(size), fc.array(region(size), { maxLength: 5 }))),
        async (clusterSize, [size, regions]) => {
          const name = join(dir, `case-${runs++}`);
          // qemu-img rounds the virtual size up to whole sectors.
          await writeRaw(`${name}.raw`, size, regions);
          try {
            const options = `compat=1.1,cluster_size=${clusterSize},compression_type=${codec}`;
            await qemu('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', options, `${name}.raw`, `${name}.qcow2`]);
            await qemu('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', `${name}.qcow2`, `${name}.qemu.raw`]);
            const opened = await openImageFile(`${name}.qcow2`, 'qcow2');
            try {
              const ours = await rawContentSha256(opened.source);
              expect(ours.sha256).toBe(await fileSha256(`${name}.qemu.raw`));
            } finally {
              await opened.close();
            }
          } finally {
            for (const suffix of ['.raw', '.qcow2', '.qemu.raw']) await rm(`${name}${suffix}`, { force: true });
          }
        },
      ),
      { numRuns: 25 },
    );
    expect(runs).toBeGreaterThanOrEqual(25);
  }, 180_000);
});
