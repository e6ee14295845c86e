import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { extentEnd, isAllZero, mergeZeros, splitZeroBlocks, type Extent } from './extents.ts';

async function all(source: AsyncIterable<Extent>): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const extent of source) out.push(extent);
  return out;
}

describe('extents', () => {
  it('tells all-zero buffers from others, across the shared buffer size', () => {
    expect(isAllZero(new Uint8Array(0))).toBe(true);
    expect(isAllZero(new Uint8Array(3 * 1024 * 1024))).toBe(true);
    const late = new Uint8Array(3 * 1024 * 1024);
    late[late.length - 1] = 1;
    expect(isAllZero(late)).toBe(false);
    expect(isAllZero(late.subarray(0, late.length - 1))).toBe(true);
  });

  it('splits a buffer into zero and data runs on image-aligned blocks', () => {
    const data = new Uint8Array(4 * 4096);
    data[100] = 1; // block at image offset 4096 (buffer starts at 4000)
    data[3 * 4096 + 500] = 2; // block at image offset 16384
    const extents = [...splitZeroBlocks(4000, data, 4096)];
    expect(extents.map((e) => [e.kind, e.offset, extentEnd(e)])).toEqual([
      ['zero', 4000, 4096],
      ['data', 4096, 8192],
      ['zero', 8192, 16384],
      ['data', 16384, 4000 + data.length],
    ]);
  });

  it('merges adjacent zero extents and drops empty ones, never merging data', async () => {
    const merged = await all(
      mergeZeros([
        { kind: 'zero', offset: 0, length: 10 },
        { kind: 'zero', offset: 10, length: 0 },
        { kind: 'zero', offset: 10, length: 5 },
        { kind: 'data', offset: 15, data: new Uint8Array(3) },
        { kind: 'data', offset: 18, data: new Uint8Array(2) },
        { kind: 'zero', offset: 20, length: 5 },
      ]),
    );
    expect(merged.map((e) => [e.kind, e.offset, extentEnd(e)])).toEqual([
      ['zero', 0, 15],
      ['data', 15, 18],
      ['data', 18, 20],
      ['zero', 20, 25],
    ]);
  });

  it('reproduces any buffer exactly through split and merge', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 3000 })), { maxLength: 20 }),
        fc.integer({ min: 0, max: 5000 }),
        async (runs, offset) => {
          const parts = runs.map(([zero, length]) => (zero ? new Uint8Array(length) : new Uint8Array(length).fill(7)));
          const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
          let at = 0;
          for (const part of parts) {
            data.set(part, at);
            at += part.length;
          }
          const extents = await all(mergeZeros(splitZeroBlocks(offset, data, 512)));
          const out = new Uint8Array(data.length);
          let position = offset;
          for (const extent of extents) {
            expect(extent.offset).toBe(position);
            if (extent.kind === 'data') out.set(extent.data, extent.offset - offset);
            else expect(isAllZero(data.subarray(extent.offset - offset, extentEnd(extent) - offset))).toBe(true);
            position = extentEnd(extent);
          }
          expect(position).toBe(offset + data.length);
          expect(Buffer.from(out).equals(Buffer.from(data))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
