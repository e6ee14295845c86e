/**
 * L1 and L2 table entries (QEMU docs/interop/qcow2.txt, "Cluster mapping" and
 * "Extended L2 Entries"). Pure decoders over a table's bytes; every offset
 * they return is checked against the file by the caller, which knows its size.
 *
 * Entries are 64-bit big-endian; they are read as two 32-bit halves so the
 * hot path (one call per guest cluster) needs no BigInt.
 */
import { hex, Qcow2FormatError } from '../errors.ts';

const TWO_32 = 2 ** 32;
/** Bits 9-55: a cluster-aligned host offset in L1 entries and standard descriptors. */
const OFFSET_HIGH_MASK = 0x00ffffff;
const OFFSET_LOW_MASK = 0xfffffe00;

export type L2Entry =
  /** Reads as zeros (no backing file: unallocated means zero). */
  | { readonly kind: 'unallocated' }
  /** The zero flag (v3), with or without a preallocated host cluster. */
  | { readonly kind: 'zero' }
  | { readonly kind: 'data'; readonly hostOffset: number }
  | { readonly kind: 'compressed'; readonly hostOffset: number; readonly compressedSize: number }
  /**
   * Extended L2: a standard cluster whose 32 subclusters are individually
   * allocated. Subcluster i holds data when bit i of `allocated` is set and
   * reads as zeros otherwise.
   */
  | { readonly kind: 'subclusters'; readonly hostOffset: number; readonly allocated: number };

export interface L2Layout {
  readonly clusterBits: number;
  readonly version: 2 | 3;
  readonly extendedL2: boolean;
}

export const UNALLOCATED: L2Entry = { kind: 'unallocated' };
export const ZERO: L2Entry = { kind: 'zero' };

/** Bytes per L2 entry: 8, or 16 with extended L2 entries. */
export function l2EntrySize(layout: L2Layout): number {
  return layout.extendedL2 ? 16 : 8;
}

/** Guest clusters one L2 table maps. */
export function l2EntriesPerTable(layout: L2Layout): number {
  return 2 ** layout.clusterBits / l2EntrySize(layout);
}

/** The L2 table offset an L1 entry points at, or 0 when the whole range is unallocated. */
export function decodeL1Entry(view: DataView, index: number, clusterSize: number): number {
  const high = view.getUint32(index * 8);
  const low = view.getUint32(index * 8 + 4);
  const offset = (high & OFFSET_HIGH_MASK) * TWO_32 + ((low & OFFSET_LOW_MASK) >>> 0);
  if (offset % clusterSize !== 0) {
    throw new Qcow2FormatError(
      'l1_entry',
      `L1 entry ${index} points at ${hex(offset)}, not aligned to the ${clusterSize}-byte cluster size`,
      { index, value: hex(offset) },
    );
  }
  return offset;
}

/**
 * Decodes the L2 entry for guest cluster `index` of the table in `view`.
 * Throws Qcow2FormatError for combinations the spec forbids.
 */
export function decodeL2Entry(view: DataView, index: number, layout: L2Layout): L2Entry {
  const at = index * l2EntrySize(layout);
  const high = view.getUint32(at);
  const low = view.getUint32(at + 4);
  const clusterSize = 2 ** layout.clusterBits;

  if ((high & 0x40000000) !== 0) {
    const entry = decodeCompressed(high, low, layout.clusterBits, index);
    if (layout.extendedL2 && (view.getUint32(at + 8) !== 0 || view.getUint32(at + 12) !== 0)) {
      throw new Qcow2FormatError('l2_entry', `compressed cluster ${index} has a non-zero subcluster bitmap`, { index });
    }
    return entry;
  }

  const hostOffset = (high & OFFSET_HIGH_MASK) * TWO_32 + ((low & OFFSET_LOW_MASK) >>> 0);
  if (hostOffset % clusterSize !== 0) {
    throw new Qcow2FormatError(
      'l2_entry',
      `cluster ${index} maps to ${hex(hostOffset)}, not aligned to the ${clusterSize}-byte cluster size`,
      { index, value: hex(hostOffset) },
    );
  }

  if (layout.extendedL2) {
    const zeroes = view.getUint32(at + 8);
    const allocated = view.getUint32(at + 12);
    if ((zeroes & allocated) !== 0) {
      throw new Qcow2FormatError(
        'l2_bitmap',
        `cluster ${index}: subclusters ${hex((zeroes & allocated) >>> 0)} are both allocated and zero`,
        { index },
      );
    }
    if (allocated === 0) return hostOffset === 0 ? UNALLOCATED : ZERO;
    if (hostOffset === 0) {
      throw new Qcow2FormatError('l2_entry', `cluster ${index} has allocated subclusters but no host offset`, { index });
    }
    return allocated === 0xffffffff ? { kind: 'data', hostOffset } : { kind: 'subclusters', hostOffset, allocated };
  }

  const zeroFlag = (low & 1) !== 0;
  if (zeroFlag) {
    if (layout.version === 2) {
      throw new Qcow2FormatError('l2_entry', `cluster ${index} has the zero flag, which version 2 images do not have`, { index });
    }
    return ZERO;
  }
  return hostOffset === 0 ? UNALLOCATED : { kind: 'data', hostOffset };
}

/**
 * Compressed cluster descriptor: with x = 62 - (cluster_bits - 8), bits
 * 0..x-1 are the byte offset of the compressed data and bits x..61 the
 * number of 512-byte sectors it uses beyond the one holding that offset.
 * The data therefore ends at the end of sector (offset / 512 + count), and
 * its length is (count + 1) * 512 - (offset % 512).
 */
export function decodeCompressed(high: number, low: number, clusterBits: number, index = 0): L2Entry {
  const x = 62 - (clusterBits - 8); // 49..61 for cluster_bits 21..9: always in the high word
  const highOffsetBits = x - 32;
  const hostOffset = (high & ((1 << highOffsetBits) - 1)) * TWO_32 + (low >>> 0);
  if (hostOffset >= 2 ** 56) {
    throw new Qcow2FormatError('l2_entry', `compressed cluster ${index} offset ${hex(hostOffset)} sets bits above 55`, {
      index,
      value: hex(hostOffset),
    });
  }
  const sectorMask = 2 ** (clusterBits - 8) - 1;
  const additionalSectors = (high >>> highOffsetBits) & sectorMask;
  const compressedSize = (additionalSectors + 1) * 512 - (hostOffset % 512);
  return { kind: 'compressed', hostOffset, compressedSize };
}
