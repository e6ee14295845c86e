import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkPool, FRAME_HEADROOM } from './chunk-pool.ts';
import { buildQcow2, type BuiltCluster } from './qcow2/builder.testutil.ts';
import { Qcow2Image } from './qcow2/reader.ts';
import { extentEnd, type DataExtent } from './extents.ts';
import { BytesReader, FileHandleReader } from './random-access.ts';
import { RawImage } from './raw.ts';

const KIB = 1024;
const MIB = 1024 * KIB;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bm-pooled-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function withHoles(size: number, holes: readonly (readonly [number, number])[]): Buffer {
  const image = randomBytes(size);
  for (const [at, length] of holes) image.fill(0, Math.min(at, size), Math.min(size, at + length));
  return image;
}

describe('pooled image chunks', () => {
  it('reuses read buffers a consumer releases, and the bytes stay right', async () => {
    const image = withHoles(20 * MIB + 123, [[3 * MIB + 4096, 2 * MIB]]);
    const path = join(dir, 'raw');
    await writeFile(path, image);
    const reader = await FileHandleReader.open(path);
    try {
      const raw = new RawImage(reader);
      const seen = Buffer.alloc(image.length);
      for await (const extent of raw.extents()) {
        if (extent.kind !== 'data') continue;
        seen.set(extent.data, extent.offset);
        expect(extent.release).toBeTypeOf('function');
        extent.release?.();
      }
      expect(seen.equals(image)).toBe(true);
      // 21 chunks read through one or two buffers.
      expect(raw.buffersAllocated).toBeLessThanOrEqual(2);
    } finally {
      await reader.close();
    }
  });

  it('allocates instead of reusing while extents are held, so held bytes never change', async () => {
    const image = randomBytes(6 * MIB);
    const raw = new RawImage(new BytesReader(image));
    const held: DataExtent[] = [];
    for await (const extent of raw.extents()) if (extent.kind === 'data') held.push(extent);
    expect(raw.buffersAllocated).toBe(6);
    for (const extent of held) expect(Buffer.from(extent.data).equals(image.subarray(extent.offset, extentEnd(extent)))).toBe(true);
  });

  it('gives each data extent headroom that belongs to nobody else: writing it changes no other extent (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 * MIB }),
        fc.array(fc.tuple(fc.nat(3 * MIB), fc.integer({ min: 1, max: 300 * KIB })), { maxLength: 8 }),
        fc.constantFrom(64 * KIB, MIB),
        fc.oneof(fc.nat(2 * MIB), fc.integer({ min: 4090, max: 4095 })),
        async (size, holes, chunkSize, from) => {
          // A hole at the start too, so a resume a few bytes before a block boundary meets a tiny zero run first.
          const image = withHoles(size, [...holes, [0, 4096]]);
          if (size > 4096) image[4096] = 1;
          const raw = new RawImage(new BytesReader(image), { chunkSize });
          const start = Math.min(from, size);
          const held: DataExtent[] = [];
          for await (const extent of raw.extents(start)) {
            if (extent.kind !== 'data') continue;
            const headroom = extent.headroom ?? 0;
            // Enough for any frame header, and really in front of the data.
            expect(headroom).toBeGreaterThanOrEqual(17);
            expect(extent.data.byteOffset).toBeGreaterThanOrEqual(headroom);
            new Uint8Array(extent.data.buffer, extent.data.byteOffset - headroom, headroom).fill(0xa5);
            held.push(extent);
          }
          for (const extent of held) expect(Buffer.from(extent.data).equals(image.subarray(extent.offset, extentEnd(extent)))).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('reads qcow2 data and compressed runs into pooled chunks with headroom that belongs to nobody else (property)', async () => {
    const CLUSTER = 64 * KIB;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(63), fc.constantFrom('data', 'compressed', 'zero', 'half')), { maxLength: 40 }),
        fc.boolean(),
        async (picks, release) => {
          const clusters = new Map<number, BuiltCluster>();
          for (const [cluster, kind] of picks) {
            const bytes = randomBytes(CLUSTER);
            if (kind === 'half') bytes.fill(0, 0, CLUSTER / 2);
            clusters.set(
              cluster,
              kind === 'zero' ? { cluster, kind } : { cluster, kind: kind === 'compressed' ? 'compressed' : 'data', bytes },
            );
          }
          const built = buildQcow2({ virtualSize: 64 * CLUSTER, clusters: [...clusters.values()].sort((a, b) => a.cluster - b.cluster) });
          const image = await Qcow2Image.open(new BytesReader(built.bytes), { chunkSize: 256 * KIB });
          const held: DataExtent[] = [];
          for await (const extent of image.extents()) {
            if (extent.kind !== 'data') continue;
            expect(extent.data.length).toBeLessThanOrEqual(256 * KIB);
            const headroom = extent.headroom ?? 0;
            new Uint8Array(extent.data.buffer, extent.data.byteOffset - headroom, headroom).fill(0xa5);
            if (release) {
              expect(Buffer.from(extent.data).equals(Buffer.from(built.raw.subarray(extent.offset, extentEnd(extent))))).toBe(true);
              extent.release?.();
            } else {
              held.push(extent);
            }
          }
          for (const extent of held)
            expect(Buffer.from(extent.data).equals(Buffer.from(built.raw.subarray(extent.offset, extentEnd(extent))))).toBe(true);
          if (release) expect(image.buffersAllocated).toBeLessThanOrEqual(3);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('returns a chunk to the pool only when the source and every extent cut from it let go', () => {
    const pool = new ChunkPool(4 * KIB);
    const chunk = pool.acquire();
    expect(chunk.data(100).byteOffset).toBe(FRAME_HEADROOM);
    const a = chunk.retain();
    const b = chunk.retain();
    chunk.release();
    a();
    a(); // releasing twice counts once
    expect(pool.acquire().buffer).not.toBe(chunk.buffer);
    b();
    expect(pool.acquire().buffer).toBe(chunk.buffer);
    expect(pool.allocated).toBe(2);
  });
});
