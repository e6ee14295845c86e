/**
 * The agent's replacement for grpc-js's message framing on send
 * (agent/server/framed-send.ts): the same bytes as grpc-js frames, without
 * the copy for a buffer that allows framing in place, and grpc-js's own copy
 * for anything else.
 */
import { randomBytes } from 'node:crypto';
import { CompressionFilter } from '@grpc/grpc-js/build/src/compression-filter.js';
import { describe, expect, it } from 'vitest';
import { allowFramingInPlace, GRPC_PREFIX_BYTES, installFramedSend } from '../../agent/server/framed-send.ts';

type Handler = { writeMessage(message: Buffer, compress: boolean): Promise<Buffer> };

function identityHandler(): Handler {
  return (new CompressionFilter({}, {}) as unknown as { sendCompression: Handler }).sendCompression;
}

/** What grpc-js frames: the flag byte, the big-endian length, the message. */
function expectedFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(GRPC_PREFIX_BYTES);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

describe('framing in place', () => {
  installFramedSend();

  it('frames a marked buffer in its headroom, without a copy', async () => {
    const buffer = Buffer.allocUnsafeSlow(64 + 1024 * 1024);
    buffer.fill(0xee, 0, 64);
    allowFramingInPlace(buffer);
    const message = buffer.subarray(40, 40 + 1024 * 1024);
    randomBytes(message.length).copy(message);
    const framed = await identityHandler().writeMessage(message, false);
    expect(framed.buffer).toBe(buffer.buffer);
    expect(framed.byteOffset).toBe(40 - GRPC_PREFIX_BYTES);
    expect(framed.equals(expectedFrame(message))).toBe(true);
    // Only the prefix's bytes in front of the message are written.
    expect(buffer.subarray(0, 40 - GRPC_PREFIX_BYTES).every((byte) => byte === 0xee)).toBe(true);
  });

  it('copies a buffer that is not marked, as grpc-js does', async () => {
    const buffer = randomBytes(4096);
    const message = buffer.subarray(16);
    const before = Buffer.from(buffer);
    const framed = await identityHandler().writeMessage(message, false);
    expect(framed.buffer).not.toBe(buffer.buffer);
    expect(framed.equals(expectedFrame(message))).toBe(true);
    expect(buffer.equals(before)).toBe(true);
  });

  it('copies a marked message that has no room for the prefix in front', async () => {
    const buffer = Buffer.allocUnsafeSlow(1024);
    allowFramingInPlace(buffer);
    randomBytes(1024).copy(buffer);
    const message = buffer.subarray(GRPC_PREFIX_BYTES - 1);
    const before = Buffer.from(buffer);
    const framed = await identityHandler().writeMessage(message, false);
    expect(framed.buffer).not.toBe(buffer.buffer);
    expect(framed.equals(expectedFrame(message))).toBe(true);
    expect(buffer.equals(before)).toBe(true);
  });

  it('installs once: a second install does not wrap the replacement in itself', async () => {
    installFramedSend();
    const message = randomBytes(100);
    expect((await identityHandler().writeMessage(message, false)).equals(expectedFrame(message))).toBe(true);
  });
});
