/**
 * The agent's replacement for grpc-js's stream decoder write
 * (agent/server/pooled-decoder.ts): the same messages out of the same bytes
 * however the HTTP/2 chunks cut them, the same refusal of an oversized
 * message, and a released buffer reused by the next message of its size.
 */
import { randomBytes } from 'node:crypto';
import { StreamDecoder } from '@grpc/grpc-js/build/src/stream-decoder.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDirectAligned } from '../../agent/disk/direct-io.ts';
import { encodeDataFrame } from '../../proto/frames/data-frame.ts';

// Captured before the replacement is installed (the import below installs nothing by itself).
const originalWrite = StreamDecoder.prototype.write;
const { installPooledDecoder, releaseFrameBuffer } = await import('../../agent/server/pooled-decoder.ts');

function frame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

function decodeWith(
  write: (this: StreamDecoder, data: Buffer) => Buffer[],
  decoder: StreamDecoder,
  stream: Buffer,
  cuts: readonly number[],
): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const cut of [...cuts, stream.length]) {
    const end = Math.min(stream.length, Math.max(at, cut));
    out.push(...write.call(decoder, stream.subarray(at, end)));
    at = end;
  }
  return out;
}

describe('pooled stream decoder', () => {
  installPooledDecoder();
  const pooledWrite = StreamDecoder.prototype.write;

  it('is installed in place of grpc-js own write', () => {
    expect(pooledWrite).not.toBe(originalWrite);
  });

  it('yields the same framed messages as grpc-js for any messages cut anywhere (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 60_000, max: 300_000 })), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(2_000_000), { maxLength: 30 }),
        (sizes, rawCuts) => {
          const stream = Buffer.concat(sizes.map((size) => frame(randomBytes(size))));
          const cuts = [...rawCuts].sort((a, b) => a - b);
          const expected = decodeWith(originalWrite, new StreamDecoder(-1), stream, cuts);
          const actual = decodeWith(pooledWrite, new StreamDecoder(-1), stream, cuts);
          expect(actual.length).toBe(sizes.length);
          expect(actual.map((b) => b.toString('hex'))).toEqual(expected.map((b) => b.toString('hex')));
          for (const message of actual) releaseFrameBuffer(message.subarray(5));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('refuses a message over the limit as grpc-js does', () => {
    const stream = frame(randomBytes(2000));
    expect(() => pooledWrite.call(new StreamDecoder(1000), stream)).toThrow('Received message larger than max (2000 vs 1000)');
  });

  it('reuses a released buffer for the next message of its size, never one still held', () => {
    const decoder = new StreamDecoder(-1);
    const size = 1024 * 1024 + 17;
    const [first] = decoder.write(frame(randomBytes(size)));
    const [second] = decoder.write(frame(randomBytes(size)));
    expect(first?.buffer).not.toBe(second?.buffer);
    // A view of the payload (what a decoded frame's data is) gives the whole message back;
    // releasing it twice, or something the decoder never lent, adds nothing more.
    releaseFrameBuffer((first as Buffer).subarray(5 + 100, 5 + 200));
    releaseFrameBuffer((first as Buffer).subarray(5));
    releaseFrameBuffer(randomBytes(size));
    const [third] = decoder.write(frame(randomBytes(size)));
    expect(third?.buffer).toBe(first?.buffer);
    const [fourth] = decoder.write(frame(randomBytes(size)));
    expect(fourth?.buffer).not.toBe(third?.buffer);
    expect(fourth?.buffer).not.toBe(second?.buffer);
  });

  it('reuses a released buffer for a message a byte longer (a frame whose offset varint grew)', () => {
    const decoder = new StreamDecoder(-1);
    const size = 1024 * 1024 + 16;
    const [first] = decoder.write(frame(randomBytes(size)));
    releaseFrameBuffer((first as Buffer).subarray(5));
    const payload = randomBytes(size + 1);
    const [longer] = decoder.write(frame(payload));
    // Compared as a boolean: a failing toBe would print a diff of two 1 MiB buffers.
    expect(longer?.buffer === first?.buffer).toBe(true);
    expect(longer?.length).toBe(5 + size + 1);
    expect(longer?.subarray(5).equals(payload)).toBe(true);
  });

  it('places a data frame so that its payload is aligned for O_DIRECT, cut anywhere; with every slot lent, as before', () => {
    const payloads = Array.from({ length: 30 }, (_, i) => randomBytes(i === 29 ? 1000 + 64 * 1024 : 1024 * 1024));
    // Offsets whose varints take 0, 1, 3 and 5 bytes: the header in front of the payload varies in length.
    const offsets = [0, 1, 1 << 20, 3 << 30, 2 ** 40];
    const messages = payloads.map((p, i) => encodeDataFrame(offsets[i % offsets.length] as number, p));
    const stream = Buffer.concat(messages.map((m) => frame(m)));
    const cuts = Array.from({ length: 200 }, () => Math.floor(Math.random() * stream.length)).sort((a, b) => a - b);
    const decoded = decodeWith(StreamDecoder.prototype.write, new StreamDecoder(-1), stream, cuts);
    expect(decoded.length).toBe(messages.length);
    const held: Uint8Array[] = [];
    decoded.forEach((message, i) => {
      const m = messages[i] as Buffer;
      expect(message.subarray(5).equals(m)).toBe(true);
      const payload = message.subarray(5 + m.length - (payloads[i] as Buffer).length);
      // Held, none released: the first ALIGNED_SLOTS (24) whole-MiB payloads are aligned, the rest could not be.
      held.push(payload);
      expect(isDirectAligned(payload.subarray(0, 1024 * 1024), 0), `frame ${i}`).toBe(i < 24);
    });
    for (const payload of held) releaseFrameBuffer(payload);
    const [again] = new StreamDecoder(-1).write(frame(messages[0] as Buffer));
    expect(isDirectAligned((again as Buffer).subarray(5 + (messages[0] as Buffer).length - 1024 * 1024), 0)).toBe(true);
    releaseFrameBuffer((again as Buffer).subarray(5));
  });
});
