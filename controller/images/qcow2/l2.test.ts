import { describe, expect, it } from 'vitest';
import { Qcow2FormatError } from '../errors.ts';
import { decodeCompressed, decodeL1Entry, decodeL2Entry, l2EntriesPerTable, type L2Layout } from './l2.ts';

const V3: L2Layout = { clusterBits: 16, version: 3, extendedL2: false };
const V2: L2Layout = { clusterBits: 16, version: 2, extendedL2: false };
const EXT: L2Layout = { clusterBits: 16, version: 3, extendedL2: true };

function table(...words: bigint[]): DataView {
  const view = new DataView(new ArrayBuffer(words.length * 8));
  words.forEach((word, i) => view.setBigUint64(i * 8, word));
  return view;
}

describe('qcow2 L1/L2 entries', () => {
  it('decodes an L1 entry, ignoring the copied flag', () => {
    expect(decodeL1Entry(table(0x8000000000050000n), 0, 65536)).toBe(0x50000);
    expect(decodeL1Entry(table(0n), 0, 65536)).toBe(0);
  });

  it('refuses an unaligned L1 entry', () => {
    expect(() => decodeL1Entry(table(0x50200n), 0, 65536)).toThrow(/l1_entry: L1 entry 0 points at 0x50200, not aligned/);
  });

  it('decodes standard, unallocated and zero entries', () => {
    const view = table(0x8000000000070000n, 0n, 1n, 0x8000000000080001n, 0x00ff_ffff_ffff_0000n);
    expect(decodeL2Entry(view, 0, V3)).toEqual({ kind: 'data', hostOffset: 0x70000 });
    expect(decodeL2Entry(view, 1, V3)).toEqual({ kind: 'unallocated' });
    expect(decodeL2Entry(view, 2, V3)).toEqual({ kind: 'zero' });
    expect(decodeL2Entry(view, 3, V3)).toEqual({ kind: 'zero' }); // preallocated zero
    expect(decodeL2Entry(view, 4, V3)).toEqual({ kind: 'data', hostOffset: 0x00ff_ffff_ffff_0000 });
  });

  it('refuses the zero flag in a version 2 image', () => {
    expect(() => decodeL2Entry(table(1n), 0, V2)).toThrow(Qcow2FormatError);
  });

  it('refuses a data cluster that is not cluster aligned', () => {
    expect(() => decodeL2Entry(table(0x70200n), 0, V3)).toThrow(/l2_entry: cluster 0 maps to 0x70200, not aligned/);
  });

  it('decodes a compressed descriptor with 64 KiB clusters (x = 54)', () => {
    // offset 0x12345 (mid-sector: 0x145 = 325 bytes in), 3 additional sectors.
    const entry = (1n << 62n) | (3n << 54n) | 0x12345n;
    expect(decodeL2Entry(table(entry), 0, V3)).toEqual({ kind: 'compressed', hostOffset: 0x12345, compressedSize: 4 * 512 - 325 });
  });

  it('decodes the compressed sector count at the field edges for 512 B and 2 MiB clusters', () => {
    // 512 B clusters: x = 61, a 1-bit count; offset may use bits up to 55.
    const small = (1n << 62n) | (1n << 61n) | 0x00ff_ffff_ffff_fe00n;
    expect(decodeCompressed(Number(small >> 32n), Number(small & 0xffffffffn), 9)).toEqual({
      kind: 'compressed',
      hostOffset: 0x00ff_ffff_ffff_fe00,
      compressedSize: 1024,
    });
    // 2 MiB clusters: x = 49, a 13-bit count, all ones.
    const large = (1n << 62n) | (0x1fffn << 49n) | 0x1_0000_0001n;
    expect(decodeCompressed(Number(large >> 32n), Number(large & 0xffffffffn), 21)).toEqual({
      kind: 'compressed',
      hostOffset: 0x1_0000_0001,
      compressedSize: 0x2000 * 512 - 1,
    });
  });

  it('refuses compressed offsets with bits above 55 (512 B clusters leave them in the offset field)', () => {
    const entry = (1n << 62n) | (1n << 57n);
    expect(() => decodeCompressed(Number(entry >> 32n), Number(entry & 0xffffffffn), 9)).toThrow(/sets bits above 55/);
  });

  it('has 8-byte entries, or 16 with extended L2', () => {
    expect(l2EntriesPerTable(V3)).toBe(8192);
    expect(l2EntriesPerTable(EXT)).toBe(4096);
  });

  it('decodes extended L2 entries from their subcluster bitmaps', () => {
    const view = table(
      0x8000000000070000n,
      0x00000000ffffffffn, // fully allocated
      0x8000000000080000n,
      0x0000000000000005n, // subclusters 0 and 2
      0n,
      0xffffffff00000000n, // all zero
      0n,
      0n, // unallocated
      0x90000n,
      0n, // preallocated, nothing allocated: zeros
    );
    expect(decodeL2Entry(view, 0, EXT)).toEqual({ kind: 'data', hostOffset: 0x70000 });
    expect(decodeL2Entry(view, 1, EXT)).toEqual({ kind: 'subclusters', hostOffset: 0x80000, allocated: 5 });
    expect(decodeL2Entry(view, 2, EXT)).toEqual({ kind: 'unallocated' });
    expect(decodeL2Entry(view, 3, EXT)).toEqual({ kind: 'unallocated' });
    expect(decodeL2Entry(view, 4, EXT)).toEqual({ kind: 'zero' });
  });

  it('refuses extended L2 entries the spec forbids', () => {
    expect(() => decodeL2Entry(table(0x70000n, 0x0000000100000001n), 0, EXT)).toThrow(/both allocated and zero/);
    expect(() => decodeL2Entry(table(0n, 1n), 0, EXT)).toThrow(/allocated subclusters but no host offset/);
    expect(() => decodeL2Entry(table((1n << 62n) | 0x70000n, 1n), 0, EXT)).toThrow(/non-zero subcluster bitmap/);
  });
});
