/**
 * The agent's replacement for grpc-js's message framing on send
 * (agent/server/framed-send.ts): the same bytes as grpc-js frames, without
 * the copy for a buffer that allows framing in place, and grpc-js's own copy
 * for anything else.
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { CompressionFilter } from '@grpc/grpc-js/build/src/compression-filter.js';
import { describe, expect, it } from 'vitest';
import { allowFramingInPlace, GRPC_PREFIX_BYTES, installFramedSend } from '../../agent/server/framed-send.ts';
import { RELAY_CHANNEL_OPTIONS } from '../../agent/server/relay-sender.ts';

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

describe('a relay frame written in place reaches the peer unchanged', () => {
  installFramedSend();

  /** Sends `count` messages of `size` bytes from one reused buffer, scribbling on it in each write's callback. */
  async function sendReusing(channelOptions: grpc.ChannelOptions, count: number, size: number): Promise<{ sent: Buffer[]; got: Buffer[] }> {
    const got: Buffer[] = [];
    const server = new grpc.Server();
    const identity = (bytes: Buffer): Buffer => bytes;
    server.addService(
      {
        up: {
          path: '/test.Framed/Up',
          requestStream: true,
          responseStream: false,
          requestSerialize: identity,
          requestDeserialize: identity,
          responseSerialize: identity,
          responseDeserialize: identity,
        },
      },
      {
        up: (call: grpc.ServerReadableStream<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
          call.on('data', (message: Buffer) => got.push(Buffer.from(message)));
          call.on('end', () => done(null, Buffer.alloc(0)));
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), channelOptions);
    const sent: Buffer[] = [];
    try {
      const buffer = Buffer.allocUnsafeSlow(GRPC_PREFIX_BYTES + size);
      allowFramingInPlace(buffer);
      await new Promise<void>((resolve, reject) => {
        const call = client.makeClientStreamRequest<Buffer, Buffer>('/test.Framed/Up', identity, identity, (error) =>
          error ? reject(error) : resolve(),
        );
        const next = (i: number): void => {
          if (i === count) {
            call.end();
            return;
          }
          const message = buffer.subarray(GRPC_PREFIX_BYTES);
          randomBytes(size).copy(message);
          sent.push(Buffer.from(message));
          call.write(message, () => {
            // The relay reuses its read buffer here: whatever grpc-js still had to send would change.
            message.fill(0xa5);
            next(i + 1);
          });
        };
        next(0);
      });
    } finally {
      client.close();
      server.forceShutdown();
    }
    return { sent, got };
  }

  it('with the relay channel options, small frames and large, each callback comes after the bytes went out', async () => {
    for (const size of [100 * 1024, 1024 * 1024 + 100]) {
      const { sent, got } = await sendReusing(RELAY_CHANNEL_OPTIONS, 24, size);
      expect(got.length).toBe(sent.length);
      for (let i = 0; i < sent.length; i++) expect(got[i]!.equals(sent[i]!), `message ${i} of ${size} bytes`).toBe(true);
    }
  });
});
