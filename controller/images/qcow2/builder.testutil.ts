/**
 * Builds small qcow2 images in memory for unit tests, independently of the
 * reader: header at cluster 0, L1 at cluster 1, an empty refcount table at
 * cluster 2, then L2 tables, then data. Not a general writer: tests only.
 */
import { deflateRawSync, zstdCompressSync } from 'node:zlib';

export type BuiltCluster =
  | { readonly cluster: number; readonly kind: 'data'; readonly bytes: Uint8Array }
  | { readonly cluster: number; readonly kind: 'zero' }
  | { readonly cluster: number; readonly kind: 'compressed'; readonly bytes: Uint8Array };

export interface BuildOptions {
  readonly clusterBits?: number;
  readonly version?: 2 | 3;
  readonly virtualSize: number;
  readonly clusters?: readonly BuiltCluster[];
  /** How compressed clusters are compressed (default deflate); zstd sets compression_type 1 (v3 only). */
  readonly compression?: 'deflate' | 'zstd';
}

export interface BuiltImage {
  readonly bytes: Uint8Array;
  readonly l1Offset: number;
  /** Host offset of the L2 table for each L1 index that has one. */
  readonly l2Offsets: ReadonlyMap<number, number>;
  /** The expected raw content. */
  readonly raw: Uint8Array;
}

export function buildQcow2(options: BuildOptions): BuiltImage {
  const clusterBits = options.clusterBits ?? 16;
  const version = options.version ?? 3;
  const clusterSize = 2 ** clusterBits;
  const l2Entries = clusterSize / 8;
  const guestClusters = Math.ceil(options.virtualSize / clusterSize);
  const l1Entries = Math.max(1, Math.ceil(guestClusters / l2Entries));
  if (l1Entries * 8 > clusterSize) throw new Error('builder: L1 table must fit one cluster');
  const clusters = options.clusters ?? [];

  const l1Offset = clusterSize;
  const refcountOffset = 2 * clusterSize;
  const l2Offsets = new Map<number, number>();
  let next = 3 * clusterSize;
  for (const c of clusters) {
    const l1Index = Math.floor(c.cluster / l2Entries);
    if (!l2Offsets.has(l1Index)) {
      l2Offsets.set(l1Index, next);
      next += clusterSize;
    }
  }
  const chunks: { offset: number; bytes: Uint8Array }[] = [];
  const l2Values = new Map<number, bigint>(); // guest cluster -> entry
  for (const c of clusters) {
    if (c.kind === 'zero') {
      l2Values.set(c.cluster, 1n);
    } else if (c.kind === 'data') {
      next = Math.ceil(next / clusterSize) * clusterSize;
      const padded = new Uint8Array(clusterSize);
      padded.set(c.bytes.subarray(0, clusterSize));
      chunks.push({ offset: next, bytes: padded });
      l2Values.set(c.cluster, BigInt(next) | (1n << 63n));
      next += clusterSize;
    } else {
      const full = new Uint8Array(clusterSize);
      full.set(c.bytes.subarray(0, clusterSize));
      const compressed = options.compression === 'zstd' ? zstdCompressSync(full) : deflateRawSync(full);
      // Start mid-sector on purpose, to exercise the sector-count arithmetic.
      const offset = next + 100;
      chunks.push({ offset, bytes: compressed });
      const end = offset + compressed.length;
      const additional = Math.ceil(end / 512) - 1 - Math.floor(offset / 512);
      const x = BigInt(62 - (clusterBits - 8));
      l2Values.set(c.cluster, (1n << 62n) | (BigInt(additional) << x) | BigInt(offset));
      next = end;
    }
  }
  const fileSize = Math.ceil(next / 512) * 512;
  const bytes = new Uint8Array(fileSize);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x514649fb);
  view.setUint32(4, version);
  view.setUint32(20, clusterBits);
  view.setBigUint64(24, BigInt(options.virtualSize));
  view.setUint32(36, l1Entries);
  view.setBigUint64(40, BigInt(l1Offset));
  view.setBigUint64(48, BigInt(refcountOffset));
  view.setUint32(56, 1);
  if (version === 3) {
    view.setUint32(96, 4);
    view.setUint32(100, 104);
    if (options.compression === 'zstd') {
      view.setBigUint64(72, 1n << 3n);
      view.setUint32(100, 112);
      view.setUint8(104, 1);
    }
  }
  for (const [l1Index, offset] of l2Offsets) view.setBigUint64(l1Offset + l1Index * 8, BigInt(offset) | (1n << 63n));
  for (const [cluster, value] of l2Values) {
    const l2 = l2Offsets.get(Math.floor(cluster / l2Entries));
    if (l2 === undefined) throw new Error('builder: missing L2');
    view.setBigUint64(l2 + (cluster % l2Entries) * 8, value);
  }
  for (const chunk of chunks) bytes.set(chunk.bytes, chunk.offset);

  const raw = new Uint8Array(options.virtualSize);
  for (const c of clusters) {
    if (c.kind === 'zero') continue;
    const start = c.cluster * clusterSize;
    raw.set(c.bytes.subarray(0, Math.min(clusterSize, options.virtualSize - start)), start);
  }
  return { bytes, l1Offset, l2Offsets, raw };
}
