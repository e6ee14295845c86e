import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ImageFrameSchema } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { GRPC_MESSAGE_HEADER_BYTES } from '../../proto/rpc/index.ts';
import { openImageSource } from '../images/index.ts';
import { dataFrameMessage, encodeDataFrame } from './frame-codec.ts';

describe('data frame encoding', () => {
  it('is byte-identical to toBinary for any offset and payload', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), fc.uint8Array({ maxLength: 3000 }), (offset, data) => {
        const expected = toBinary(ImageFrameSchema, create(ImageFrameSchema, { offset: BigInt(offset), data }));
        expect(Buffer.from(encodeDataFrame(offset, data)).equals(Buffer.from(expected))).toBe(true);
      }),
    );
  });

  it('writes the header into the headroom before the payload instead of copying it, for any offset', () => {
    fc.assert(
      fc.property(
        fc.maxSafeNat(),
        fc.uint8Array({ minLength: 1, maxLength: 3000 }),
        fc.integer({ min: 0, max: 40 }),
        (offset, data, headroom) => {
          const backing = new Uint8Array(headroom + data.length).fill(0xee);
          backing.set(data, headroom);
          const payload = backing.subarray(headroom);
          const frame = encodeDataFrame(offset, payload, headroom);
          const expected = toBinary(ImageFrameSchema, create(ImageFrameSchema, { offset: BigInt(offset), data }));
          expect(Buffer.from(frame).equals(Buffer.from(expected))).toBe(true);
          const headerBytes = expected.length - data.length;
          if (headroom >= headerBytes) {
            // A view of the caller's buffer, ending where the payload ends.
            expect(frame.buffer).toBe(backing.buffer);
            expect(frame.byteOffset).toBe(headroom - headerBytes);
          } else {
            expect(frame.buffer).not.toBe(backing.buffer);
            expect(backing.subarray(0, headroom).every((b) => b === 0xee)).toBe(true);
          }
        },
      ),
    );
  });

  it('round-trips a large payload through the generated decoder', () => {
    const data = new Uint8Array(1024 * 1024 + 7).map((_, i) => i * 31);
    const decoded = fromBinary(ImageFrameSchema, encodeDataFrame(2 ** 40 + 3, data));
    expect(decoded.offset).toBe(2n ** 40n + 3n);
    expect(Buffer.from(decoded.data).equals(Buffer.from(data))).toBe(true);
  });
});

describe('data frame messages for the rpc adapter', () => {
  it('pass on the headroom the frame header left, and none when the frame had to be copied', () => {
    const backing = new Uint8Array(32 + 1000).fill(1);
    const data = backing.subarray(32);
    const inPlace = dataFrameMessage(2 ** 40, data, 32);
    const headerBytes = inPlace.bytes.length - data.length;
    expect(inPlace.bytes.buffer).toBe(backing.buffer);
    expect(inPlace.headroom).toBe(32 - headerBytes);
    expect(inPlace.bytes.byteOffset).toBe(inPlace.headroom);
    const copied = dataFrameMessage(2 ** 40, data, 3);
    expect(copied.bytes.buffer).not.toBe(backing.buffer);
    expect(copied.headroom).toBe(0);
  });
});

describe('data frames cut from an image source', () => {
  it('leave room for gRPC’s message header in front, so the agent connection sends them without a copy', async () => {
    const MIB = 1024 * 1024;
    const bytes = new Uint8Array(3 * MIB).map((_, i) => (i * 7 + 1) & 0xff);
    bytes.fill(0, MIB, 2 * MIB - 4096); // a data run after a zero run inside a chunk
    const reader = {
      size: bytes.length,
      read: async (position: number, length: number) => bytes.slice(position, position + length),
      readInto: async (position: number, target: Uint8Array) => {
        const n = Math.min(target.length, bytes.length - position);
        target.set(bytes.subarray(position, position + n));
        return n;
      },
      close: async () => undefined,
    };
    const image = await openImageSource(reader, 'raw');
    let frames = 0;
    for await (const extent of image.source.extents()) {
      if (extent.kind !== 'data') continue;
      const message = dataFrameMessage(extent.offset, extent.data, extent.headroom ?? 0);
      expect(message.bytes.buffer).toBe(extent.data.buffer);
      expect(message.headroom).toBeGreaterThanOrEqual(GRPC_MESSAGE_HEADER_BYTES);
      extent.release?.();
      frames++;
    }
    expect(frames).toBe(3);
  });
});
