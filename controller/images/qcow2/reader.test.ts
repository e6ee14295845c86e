import { createHash, randomBytes } from 'node:crypto';
import { deflateRawSync, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { collect } from '../collect.testutil.ts';
import { rawContentSha256 } from '../digest.ts';
import { Qcow2FormatError } from '../errors.ts';
import { BytesReader } from '../random-access.ts';
import { buildQcow2 } from './builder.testutil.ts';
import { inspectQcow2 } from './inspect.ts';
import { Qcow2Image } from './reader.ts';

const CLUSTER = 65536;

function pattern(seed: number, length = CLUSTER): Uint8Array {
  const bytes = randomBytes(length);
  bytes[0] = seed;
  return bytes;
}

/** An image with every kind of cluster: data, a zero-filled data cluster, zero flag, compressed, holes. */
function mixedImage(compression: 'deflate' | 'zstd' = 'deflate'): ReturnType<typeof buildQcow2> {
  const zeroData = new Uint8Array(CLUSTER);
  const halfZero = pattern(9);
  halfZero.fill(0, 8192, CLUSTER);
  return buildQcow2({
    virtualSize: 20 * CLUSTER + 1024, // a partial last cluster
    compression,
    clusters: [
      { cluster: 0, kind: 'data', bytes: pattern(1) },
      { cluster: 1, kind: 'data', bytes: pattern(2) },
      { cluster: 3, kind: 'zero' },
      { cluster: 4, kind: 'compressed', bytes: pattern(4) },
      { cluster: 5, kind: 'compressed', bytes: new TextEncoder().encode('compressible '.repeat(5000)) },
      { cluster: 6, kind: 'data', bytes: zeroData },
      { cluster: 7, kind: 'data', bytes: halfZero },
      { cluster: 20, kind: 'data', bytes: pattern(20) },
    ],
  });
}

describe('qcow2 reader', () => {
  it('yields the raw content with holes, zero clusters, compressed and partial clusters', async () => {
    const built = mixedImage();
    const image = await Qcow2Image.open(new BytesReader(built.bytes));
    const { bytes, extents } = await collect(image);
    expect(Buffer.from(bytes).equals(Buffer.from(built.raw))).toBe(true);
    // Clusters 2 (unallocated) and 3 (zero flag) are one merged hole; compressed clusters 4 and 5
    // decompress into one chunk; cluster 6 (allocated but all zeros) becomes a hole; cluster 7's
    // zero tail merges with the hole up to cluster 20.
    expect(extents.map((e) => [e.kind, e.offset])).toEqual([
      ['data', 0],
      ['zero', 2 * CLUSTER],
      ['data', 4 * CLUSTER],
      ['zero', 6 * CLUSTER],
      ['data', 7 * CLUSTER],
      ['zero', 7 * CLUSTER + 8192],
      ['data', 20 * CLUSTER],
    ]);
    expect((await rawContentSha256(image)).sha256).toBe(createHash('sha256').update(built.raw).digest('hex'));
  });

  it('coalesces host-contiguous data clusters into reads of at most the chunk size', async () => {
    const clusters = Array.from({ length: 40 }, (_, i) => ({ cluster: i, kind: 'data' as const, bytes: pattern(i) }));
    const built = buildQcow2({ virtualSize: 40 * CLUSTER, clusters });
    const image = await Qcow2Image.open(new BytesReader(built.bytes), { chunkSize: 256 * 1024 });
    const { bytes, extents } = await collect(image, 0, 256 * 1024);
    expect(Buffer.from(bytes).equals(Buffer.from(built.raw))).toBe(true);
    expect(extents).toHaveLength(10);
  });

  it('splits 2 MiB clusters into extents no larger than the chunk size', async () => {
    const built = buildQcow2({
      clusterBits: 21,
      virtualSize: 2 ** 22,
      clusters: [{ cluster: 1, kind: 'data', bytes: pattern(1, 2 ** 21) }],
    });
    const { bytes } = await collect(await Qcow2Image.open(new BytesReader(built.bytes)), 0, 1024 * 1024);
    expect(Buffer.from(bytes).equals(Buffer.from(built.raw))).toBe(true);
  });

  it('starts at any fromOffset and yields exactly the tail of the image', async () => {
    const built = mixedImage();
    const image = await Qcow2Image.open(new BytesReader(built.bytes));
    for (const from of [
      0,
      1,
      CLUSTER - 1,
      CLUSTER,
      3 * CLUSTER + 5,
      4 * CLUSTER + 100,
      7 * CLUSTER + 9000,
      20 * CLUSTER + 1023,
      image.virtualSize,
    ]) {
      const { bytes } = await collect(image, from);
      expect(Buffer.from(bytes).equals(Buffer.from(built.raw.subarray(from))), `from ${from}`).toBe(true);
    }
    expect(() => image.extents(image.virtualSize + 1)).toThrow(RangeError);
  });

  it('skips to fromOffset without reading the L2 tables before it', async () => {
    const clusters = [
      { cluster: 0, kind: 'data' as const, bytes: pattern(0) },
      { cluster: 8192, kind: 'data' as const, bytes: pattern(1) },
    ];
    const built = buildQcow2({ virtualSize: 8193 * CLUSTER, clusters });
    const reads: number[] = [];
    const inner = new BytesReader(built.bytes);
    const image = await Qcow2Image.open({
      size: inner.size,
      read: (position, length) => (reads.push(position), inner.read(position, length)),
    });
    reads.length = 0;
    await collect(image, 8192 * CLUSTER);
    const firstL2 = built.l2Offsets.get(0);
    expect(reads).not.toContain(firstL2);
  });

  it('reports clusters by kind at inspect time', async () => {
    expect(await inspectQcow2(new BytesReader(mixedImage().bytes))).toEqual({
      format: 'qcow2',
      version: 3,
      virtualSize: 20 * CLUSTER + 1024,
      clusterSize: CLUSTER,
      extendedL2: false,
      dirty: false,
      dataClusters: 5,
      compressedClusters: 2,
      zeroClusters: 1,
    });
  });

  describe('zstd compression (compression_type 1)', () => {
    /** Host offset of the (zstd-compressed) cluster 4's descriptor in the mixed image's L2 table. */
    const entryOf = (built: ReturnType<typeof buildQcow2>, index: number): number => (built.l2Offsets.get(0) ?? 0) + index * 8;
    /** Appends `data` at the end of the image (sector aligned) and points cluster 4 at it. */
    function withCluster4(data: Uint8Array): { bytes: Uint8Array; raw: Uint8Array } {
      const built = mixedImage('zstd');
      const at = built.bytes.length;
      const bytes = new Uint8Array(at + Math.ceil((data.length + 100) / 512) * 512);
      bytes.set(built.bytes);
      bytes.set(data, at);
      bytes.fill(0xee, at + data.length); // bytes after the frames, as the sector count allows
      const additional = BigInt(Math.ceil(bytes.length / 512) - 1 - at / 512);
      new DataView(bytes.buffer).setBigUint64(entryOf(built, 4), (1n << 62n) | (additional << 54n) | BigInt(at));
      return { bytes, raw: built.raw };
    }
    async function read(bytes: Uint8Array): Promise<Uint8Array> {
      return (await collect(await Qcow2Image.open(new BytesReader(bytes)))).bytes;
    }

    it('reads the mixed image compressed with zstd', async () => {
      const built = mixedImage('zstd');
      const image = await Qcow2Image.open(new BytesReader(built.bytes));
      expect(image.header.compressionType).toBe(1);
      expect(Buffer.from((await collect(image)).bytes).equals(Buffer.from(built.raw))).toBe(true);
    });

    it('reads a cluster stored as several frames, and a skippable frame, ignoring the bytes after the last', async () => {
      const content = pattern(4);
      const frames = Buffer.concat([
        zstdCompressSync(content.subarray(0, 1000)),
        Uint8Array.from([0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 7, 7]),
        zstdCompressSync(content.subarray(1000)),
      ]);
      const { bytes, raw } = withCluster4(frames);
      raw.set(content, 4 * CLUSTER);
      expect(Buffer.from(await read(bytes)).equals(Buffer.from(raw))).toBe(true);
    });

    it('refuses a frame that decompresses to more than a cluster (a zstd bomb), or to less', async () => {
      const bomb = withCluster4(zstdCompressSync(new Uint8Array(16 * CLUSTER)));
      await expect(read(bomb.bytes)).rejects.toMatchObject({
        field: 'compressed_cluster',
        message: expect.stringMatching(/guest cluster 4 .* does not decompress \(zstd\) to one cluster/),
      });
      const short = withCluster4(zstdCompressSync(new Uint8Array(CLUSTER / 2)));
      await expect(read(short.bytes)).rejects.toMatchObject({
        field: 'compressed_cluster',
        message: expect.stringMatching(/guest cluster 4\b.*zstd/),
      });
    });

    it('refuses garbage and a truncated frame', async () => {
      await expect(read(withCluster4(new Uint8Array(2000).fill(0x42)).bytes)).rejects.toBeInstanceOf(Qcow2FormatError);
      const frame = zstdCompressSync(pattern(4));
      const built = mixedImage('zstd');
      const view = new DataView(built.bytes.buffer);
      const entry = view.getBigUint64(entryOf(built, 4));
      view.setBigUint64(entryOf(built, 4), entry & ~(0xffn << 54n)); // one sector of a frame that needs more
      expect(frame.length).toBeGreaterThan(512);
      await expect(read(built.bytes)).rejects.toMatchObject({
        field: 'compressed_cluster',
        message: expect.stringMatching(/runs past the compressed data/),
      });
    });
  });

  describe('hostile images', () => {
    const l2Entry = (built: ReturnType<typeof buildQcow2>, l1Index: number, index: number): number => {
      const l2 = built.l2Offsets.get(l1Index);
      if (l2 === undefined) throw new Error('no L2');
      return l2 + index * 8;
    };
    async function refusal(bytes: Uint8Array): Promise<unknown> {
      try {
        await inspectQcow2(new BytesReader(bytes));
        const image = await Qcow2Image.open(new BytesReader(bytes));
        await collect(image);
      } catch (err) {
        return err;
      }
      return undefined;
    }

    it('reads an L1 entry of offset 0 with the copied flag as a hole, and refuses one pointing at the L1 table', async () => {
      const built = mixedImage();
      const view = new DataView(built.bytes.buffer);
      view.setBigUint64(built.l1Offset, 1n << 63n);
      expect(await refusal(built.bytes)).toBeUndefined();
      view.setBigUint64(built.l1Offset, BigInt(built.l1Offset));
      expect(await refusal(built.bytes)).toMatchObject({
        field: 'l1_entry',
        message: expect.stringMatching(/L1 entry 0 points at 0x10000, into the L1 table/),
      });
    });

    it('refuses an L1 entry past the end of the file', async () => {
      const built = mixedImage();
      new DataView(built.bytes.buffer).setBigUint64(built.l1Offset, 1n << 40n);
      expect(await refusal(built.bytes)).toMatchObject({ field: 'l1_entry', message: expect.stringMatching(/past the end of the/) });
    });

    it('refuses two L1 entries sharing one L2 table', async () => {
      const built = buildQcow2({ virtualSize: 8192 * 2 * CLUSTER, clusters: [{ cluster: 0, kind: 'data', bytes: pattern(0) }] });
      const view = new DataView(built.bytes.buffer);
      view.setBigUint64(built.l1Offset + 8, view.getBigUint64(built.l1Offset));
      expect(await refusal(built.bytes)).toMatchObject({
        field: 'l1_entry',
        message: expect.stringMatching(/L1 entry 1 points at 0x30000, into the L2 table of L1 entry 0/),
      });
    });

    it('reads a data entry of offset 0 as a hole, and refuses one past the end of the file', async () => {
      const holed = mixedImage();
      new DataView(holed.bytes.buffer).setBigUint64(l2Entry(holed, 0, 0), 1n << 63n);
      expect(await refusal(holed.bytes)).toBeUndefined();
      const beyond = mixedImage();
      new DataView(beyond.bytes.buffer).setBigUint64(l2Entry(beyond, 0, 0), 1n << 45n);
      const err = await refusal(beyond.bytes);
      expect(err).toBeInstanceOf(Qcow2FormatError);
      expect(err).toMatchObject({ field: 'l2_entry', message: expect.stringMatching(/outside the data area/) });
    });

    it('refuses a compressed cluster whose offset lies in the header cluster', async () => {
      const built = mixedImage();
      new DataView(built.bytes.buffer).setBigUint64(l2Entry(built, 0, 4), (1n << 62n) | 100n);
      expect(await refusal(built.bytes)).toMatchObject({ field: 'l2_entry' });
    });

    describe("entries pointing into the image's own metadata", () => {
      // The builder's layout: header at cluster 0, L1 at 1, refcount table at 2, L2 tables from 3.
      const cases: {
        name: string;
        edit: (built: ReturnType<typeof buildQcow2>, view: DataView) => void;
        field: string;
        message: RegExp;
      }[] = [
        {
          name: 'a data entry pointing at the L1 table',
          edit: (built, view) => view.setBigUint64(l2Entry(built, 0, 1), (1n << 63n) | BigInt(built.l1Offset)),
          field: 'l2_entry',
          message: /L2 entry 1 of L1 entry 0 \(guest cluster 1\) points at 0x10000, into the L1 table/,
        },
        {
          name: 'a data entry pointing at the refcount table',
          edit: (built, view) => view.setBigUint64(l2Entry(built, 0, 7), (1n << 63n) | BigInt(2 * CLUSTER)),
          field: 'l2_entry',
          message: /L2 entry 7 of L1 entry 0 \(guest cluster 7\) points at 0x20000, into the refcount table/,
        },
        {
          name: 'a data entry pointing at its own L2 table',
          edit: (built, view) => view.setBigUint64(l2Entry(built, 0, 20), (1n << 63n) | BigInt(built.l2Offsets.get(0) ?? 0)),
          field: 'l2_entry',
          message: /L2 entry 20 of L1 entry 0 \(guest cluster 20\) points at 0x30000, into the L2 table of L1 entry 0/,
        },
        {
          name: 'a compressed entry whose data lies in the refcount table and the L2 table after it',
          // 200 bytes before the L2 table, one more sector: the data crosses into it; the first region is named.
          edit: (built, view) => view.setBigUint64(l2Entry(built, 0, 4), (1n << 62n) | (1n << 54n) | BigInt(3 * CLUSTER - 200)),
          field: 'l2_entry',
          message: /L2 entry 4 of L1 entry 0 \(guest cluster 4\) points at 0x2ff38, into the refcount table \[0x20000, 0x30000\)/,
        },
        {
          name: 'an L1 entry pointing at the refcount table',
          edit: (built, view) => view.setBigUint64(built.l1Offset, (1n << 63n) | BigInt(2 * CLUSTER)),
          field: 'l1_entry',
          message: /L1 entry 0 points at 0x20000, into the refcount table/,
        },
        {
          name: 'a refcount block in the L1 table',
          edit: (built, view) => view.setBigUint64(2 * CLUSTER + 8, BigInt(built.l1Offset)),
          field: 'refcount_table_entry',
          message: /refcount table entry 1 points at 0x10000, into the L1 table/,
        },
        {
          name: 'a refcount block in an L2 table',
          edit: (built, view) => view.setBigUint64(2 * CLUSTER, BigInt(built.l2Offsets.get(0) ?? 0)),
          field: 'l1_entry',
          message: /L1 entry 0 points at 0x30000, into the refcount block of refcount table entry 0/,
        },
        {
          name: 'a refcount block not aligned to a cluster',
          edit: (_built, view) => view.setBigUint64(2 * CLUSTER + 16, 0n | 0x200n),
          field: 'refcount_table_entry',
          message: /refcount table entry 2 points at 0x200, not aligned/,
        },
        {
          name: 'a refcount table overlapping the L1 table',
          edit: (built, view) => view.setBigUint64(48, BigInt(built.l1Offset)),
          field: 'refcount_table_offset',
          message: /the refcount table \(refcount_table_offset\) points at 0x10000, into the L1 table/,
        },
      ];
      it.each(cases)('refuses $name at open, before any extent, naming the entry', async ({ edit, field, message }) => {
        const built = mixedImage();
        edit(built, new DataView(built.bytes.buffer));
        const err = await Qcow2Image.open(new BytesReader(built.bytes)).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(Qcow2FormatError);
        expect(err).toMatchObject({ field, message: expect.stringMatching(message) });
        expect(await refusal(built.bytes)).toMatchObject({ field });
      });

      it('still reads the untouched image and refcount blocks that point at their own clusters', async () => {
        const built = mixedImage();
        // A refcount block in a cluster of its own at the end of the file.
        const bytes = new Uint8Array(built.bytes.length + 2 * CLUSTER);
        bytes.set(built.bytes);
        const block = Math.ceil(built.bytes.length / CLUSTER) * CLUSTER;
        new DataView(bytes.buffer).setBigUint64(2 * CLUSTER, BigInt(block));
        expect(await refusal(bytes)).toBeUndefined();
      });
    });

    it('refuses an L1 table that does not fit in the file or cannot map the disk', async () => {
      const tooSmall = mixedImage();
      new DataView(tooSmall.bytes.buffer).setBigUint64(24, BigInt(8193 * CLUSTER));
      expect(await refusal(tooSmall.bytes)).toMatchObject({ field: 'l1_size' });
      const tooBig = mixedImage();
      new DataView(tooBig.bytes.buffer).setUint32(36, 1_000_000);
      expect(await refusal(tooBig.bytes)).toMatchObject({ field: 'l1_table_offset' });
      const absurd = mixedImage();
      new DataView(absurd.bytes.buffer).setUint32(36, 0xffffffff);
      expect(await refusal(absurd.bytes)).toMatchObject({ feature: 'l1_size' });
    });

    it('refuses a compressed cluster that inflates to more than one cluster (a zip bomb)', async () => {
      const built = mixedImage();
      const bomb = deflateRawSync(new Uint8Array(16 * CLUSTER));
      const at = built.bytes.length - 4096;
      const bytes = new Uint8Array(built.bytes.length + bomb.length);
      bytes.set(built.bytes);
      bytes.set(bomb, at);
      const additional = BigInt(Math.ceil((at + bomb.length) / 512) - 1 - Math.floor(at / 512));
      new DataView(bytes.buffer).setBigUint64(l2Entry(built, 0, 4), (1n << 62n) | (additional << 54n) | BigInt(at));
      expect(await refusal(bytes)).toMatchObject({
        field: 'compressed_cluster',
        message: expect.stringMatching(/does not inflate to one cluster/),
      });
    });

    it('refuses a compressed cluster whose data is garbage or too short', async () => {
      const built = mixedImage();
      const view = new DataView(built.bytes.buffer);
      const entry = view.getBigUint64(l2Entry(built, 0, 4));
      view.setBigUint64(l2Entry(built, 0, 4), (entry & ~(0xffn << 54n)) | 0n); // one sector only
      expect(await refusal(built.bytes)).toMatchObject({ field: 'compressed_cluster' });
    });
  });
});
