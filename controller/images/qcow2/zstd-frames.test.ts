import { constants, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Qcow2FormatError } from '../errors.ts';
import { zstdFrameAt } from './zstd-frames.ts';

const MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
/** Single segment, 1-byte content size 5, one last raw block of 5 bytes. */
const RAW_FRAME = Uint8Array.from([...MAGIC, 0x20, 5, (5 << 3) | 1, 0, 0, ...new TextEncoder().encode('hello')]);
/** Single segment, content size 8, one last RLE block of 8 copies of 'a'. */
const RLE_FRAME = Uint8Array.from([...MAGIC, 0x20, 8, (8 << 3) | (1 << 1) | 1, 0, 0, 0x61]);
/** A skippable frame (magic 0x184D2A53) of 3 bytes. */
const SKIPPABLE = Uint8Array.from([0x53, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);

function withTrailing(frame: Uint8Array, trailing: number[]): Uint8Array {
  return Uint8Array.from([...frame, ...trailing]);
}

describe('zstd frame lengths', () => {
  it('measures hand-made raw and RLE frames, which Node decodes to what they say', () => {
    expect(zstdFrameAt(withTrailing(RAW_FRAME, [0xde, 0xad]), 0)).toEqual({ length: 14, skippable: false });
    expect(Buffer.from(zstdDecompressSync(RAW_FRAME)).toString()).toBe('hello');
    expect(zstdFrameAt(withTrailing(RLE_FRAME, [0, 0, 0]), 0)).toEqual({ length: 10, skippable: false });
    expect(Buffer.from(zstdDecompressSync(RLE_FRAME)).toString()).toBe('aaaaaaaa');
  });

  it('measures a skippable frame and a frame after it', () => {
    const both = Uint8Array.from([...SKIPPABLE, ...RAW_FRAME]);
    expect(zstdFrameAt(both, 0)).toEqual({ length: 11, skippable: true });
    expect(zstdFrameAt(both, 11)).toEqual({ length: 14, skippable: false });
  });

  it('counts the content checksum', () => {
    const frame = zstdCompressSync(Buffer.from('hello hello hello hello'), { params: { [constants.ZSTD_c_checksumFlag]: 1 } });
    expect((frame[4] ?? 0) & 0x04).toBe(0x04);
    expect(zstdFrameAt(withTrailing(frame, [9, 9, 9, 9, 9]), 0).length).toBe(frame.length);
  });

  it('measures any frame Node writes, with any bytes after it (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 70_000 }),
        fc.boolean(),
        fc.boolean(),
        fc.uint8Array({ maxLength: 600 }),
        (data, checksum, repeat, trailing) => {
          const input = repeat ? Buffer.from(data).fill(data[0] ?? 0) : data;
          const frame = zstdCompressSync(input, { params: { [constants.ZSTD_c_checksumFlag]: checksum ? 1 : 0 } });
          expect(zstdFrameAt(withTrailing(frame, [...trailing]), 0).length).toBe(frame.length);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refuses bad magic, the reserved bit, the reserved block type and every truncation', () => {
    const refusal = (bytes: Uint8Array): unknown => {
      try {
        zstdFrameAt(bytes, 0, 7);
      } catch (err) {
        return err;
      }
      return undefined;
    };
    expect(refusal(Uint8Array.from([1, 2, 3, 4, 5, 6]))).toMatchObject({
      field: 'compressed_cluster',
      message: expect.stringMatching(/guest cluster 7: zstd frame at byte 0 has magic 0x4030201/),
    });
    const reservedBit = RAW_FRAME.slice();
    reservedBit[4] = 0x28;
    expect(refusal(reservedBit)).toMatchObject({ message: expect.stringMatching(/reserved descriptor bit/) });
    const reservedBlock = RAW_FRAME.slice();
    reservedBlock[6] = (5 << 3) | (3 << 1) | 1;
    expect(refusal(reservedBlock)).toMatchObject({ message: expect.stringMatching(/reserved block type/) });
    const big = zstdCompressSync(randomBytes(5000), { params: { [constants.ZSTD_c_checksumFlag]: 1 } });
    for (const frame of [RAW_FRAME, RLE_FRAME, SKIPPABLE, big]) {
      for (let length = 0; length < frame.length; length++) {
        expect(refusal(frame.subarray(0, length)), `${length} of ${frame.length}`).toBeInstanceOf(Qcow2FormatError);
      }
    }
  });
});
