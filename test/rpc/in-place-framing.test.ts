/**
 * In-place framing (proto/rpc/in-place-framing.ts) against a real grpc-js
 * server: encoded messages with room in front are sent without grpc-js's
 * copy (their own buffer carries gRPC's header), and a write's callback
 * comes only once the bytes are written, so a sender that reuses its buffer
 * right away still delivers every message intact. Also guards the grpc-js
 * internal the hook relies on.
 */
import { createHash } from 'node:crypto';
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EchoRequestSchema, EchoService } from '../../proto/gen/bm/testing/v1/echo_pb.js';
import { addService, bindServer, connect, encoded, GRPC_MESSAGE_HEADER_BYTES, shutdownServer } from '../../proto/rpc/index.ts';

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');
let server: grpc.Server;
let port: number;

beforeAll(async () => {
  server = new grpc.Server({ 'grpc.max_receive_message_length': 4 << 20 });
  addService(server, EchoService, {
    unary: (req) => ({ text: req.text }),
    async *serverStream() {},
    clientStream: async () => ({}),
    async *bidi(reqs) {
      let index = 0;
      for await (const r of reqs) yield { text: sha(r.text), index: index++ };
    },
  });
  port = await bindServer(server, '127.0.0.1:0');
});
afterAll(() => shutdownServer(server, 1000));

const HEADROOM = 8;

/** Sizes around the retry buffer's 1 MiB per-call limit (below it grpc-js could call back before writing), and small ones. */
const SIZES = [1, 100, 4096, 65_000, 300_000, 1_000_000, 1_048_000, 1_100_000, 17, 500_000];

/**
 * Sends every size as an encoded message from one of two reused buffers: as
 * soon as a write's callback runs, its buffer is scribbled over and used for
 * a later message. Returns the server's digests and, per message, the five
 * bytes in front of the protobuf bytes as the callback found them.
 */
async function sendReusing(
  inPlaceFraming: boolean,
): Promise<{ digests: string[]; fronts: Buffer[]; texts: string[]; verdicts: boolean[] }> {
  const conn = connect(`127.0.0.1:${port}`, { inPlaceFraming, channelOptions: { 'grpc.max_send_message_length': 4 << 20 } });
  try {
    const call = conn.duplex(EchoService.method.bidi);
    const free = [Buffer.alloc(HEADROOM + 1_200_000), Buffer.alloc(HEADROOM + 1_200_000)];
    const waiters: (() => void)[] = [];
    const fronts: Buffer[] = [];
    const texts: string[] = [];
    const verdicts: boolean[] = [];
    const responses = (async () => {
      const digests: string[] = [];
      for await (const r of call) digests.push(r.text);
      return digests;
    })();
    for (const [i, size] of SIZES.entries()) {
      while (free.length === 0) await new Promise<void>((resolve) => waiters.push(resolve));
      const buffer = free.pop()!;
      const text = String.fromCharCode(97 + i).repeat(size);
      texts.push(text);
      const bytes = toBinary(EchoRequestSchema, create(EchoRequestSchema, { text }));
      buffer.set(bytes, HEADROOM);
      const message = buffer.subarray(HEADROOM, HEADROOM + bytes.length);
      call.write(encoded(EchoRequestSchema, message, HEADROOM), (reusable) => {
        verdicts[i] = reusable;
        fronts[i] = Buffer.from(buffer.subarray(HEADROOM - GRPC_MESSAGE_HEADER_BYTES, HEADROOM));
        buffer.fill(0x5a);
        free.push(buffer);
        waiters.shift()?.();
      });
    }
    call.end();
    return { digests: await responses, fronts, texts, verdicts };
  } finally {
    conn.close();
  }
}

describe('in-place gRPC framing', () => {
  it('sends encoded messages in their own buffer, each intact although the buffer is reused at its write callback', async () => {
    const { digests, fronts, texts, verdicts } = await sendReusing(true);
    expect(digests).toEqual(texts.map(sha));
    // Every write came back while the call was live: each buffer was declared reusable.
    expect(verdicts).toEqual(texts.map(() => true));
    for (const [i, text] of texts.entries()) {
      const length = toBinary(EchoRequestSchema, create(EchoRequestSchema, { text })).length;
      const header = Buffer.alloc(GRPC_MESSAGE_HEADER_BYTES);
      header.writeUInt32BE(length, 1);
      // gRPC's header went into the sender's spare bytes: grpc-js did not copy the message.
      expect(fronts[i]).toEqual(header);
    }
  });

  it('leaves the spare bytes alone on a connection that does not frame in place', async () => {
    const { digests, fronts, texts } = await sendReusing(false);
    expect(digests).toEqual(texts.map(sha));
    for (const front of fronts)
      expect(front.equals(Buffer.alloc(GRPC_MESSAGE_HEADER_BYTES, 0x5a)) || front.every((b) => b === 0)).toBe(true);
  });
});
