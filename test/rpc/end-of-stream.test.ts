/**
 * A client that cancels a call it streams requests on must not look, to the
 * handler, like a client that finished: grpc-js's client sends END_STREAM
 * just before RST_STREAM, and the server reads the first as the end of the
 * requests (proto/rpc/end-of-stream.ts). Real grpc-js client and server over
 * loopback.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EchoService } from '../../proto/gen/bm/testing/v1/echo_pb.js';
import { http2SessionOf } from '../../proto/rpc/end-of-stream.ts';
import { addService, bindServer, CallCancelledError, connect, shutdownServer, type RpcConnection } from '../../proto/rpc/index.ts';

type Outcome = { readonly kind: 'completed'; readonly received: number } | { readonly kind: 'threw'; readonly error: unknown };

let server: grpc.Server;
let conn: RpcConnection;
/** What each handler call made of its requests, by the text of its first request. */
const outcomes = new Map<string, Outcome>();
const settled = new Map<string, () => void>();

function outcomeOf(id: string): Promise<Outcome> {
  const known = outcomes.get(id);
  if (known) return Promise.resolve(known);
  return new Promise((resolve) => settled.set(id, () => resolve(outcomes.get(id)!)));
}

function record(id: string, outcome: Outcome): void {
  outcomes.set(id, outcome);
  settled.get(id)?.();
}

beforeAll(async () => {
  server = new grpc.Server();
  addService(server, EchoService, {
    unary: (req) => ({ text: req.text }),
    async *serverStream() {},
    async clientStream(reqs) {
      let id = '';
      let received = 0;
      try {
        for await (const r of reqs) {
          if (received++ === 0) id = r.text;
        }
      } catch (error) {
        record(id, { kind: 'threw', error });
        throw error;
      }
      record(id, { kind: 'completed', received });
      return { text: id, index: received };
    },
    async *bidi(reqs) {
      for await (const r of reqs) yield { text: r.text };
    },
  });
  const port = await bindServer(server, '127.0.0.1:0');
  conn = connect(`127.0.0.1:${port}`);
});

afterAll(async () => {
  conn?.close();
  if (server) await shutdownServer(server, 1000);
});

describe('the end of a client stream', () => {
  it('is a cancel, not a finished stream, when the client cancels after its last write', async () => {
    const echo = conn.client(EchoService);
    // Several rounds: the END_STREAM/RST_STREAM pair arrives in one read on loopback or in two on a busy machine.
    for (let round = 0; round < 20; round++) {
      const id = `cancelled-${round}`;
      const abort = new AbortController();
      let written = 0;
      async function* requests(): AsyncIterable<{ text: string }> {
        for (; written < 5; written++) yield { text: id };
        await new Promise((resolve) => abort.signal.addEventListener('abort', resolve, { once: true }));
      }
      const call = echo.clientStream(requests(), { signal: abort.signal }).catch((e: unknown) => e);
      await expect.poll(() => written, { timeout: 2000 }).toBe(5);
      await new Promise((r) => setTimeout(r, 20));
      abort.abort();
      expect(await call).toMatchObject({ code: grpc.status.CANCELLED });
      const outcome = await outcomeOf(id);
      expect(outcome.kind, `round ${round}`).toBe('threw');
      expect(outcome.kind === 'threw' && outcome.error).toBeInstanceOf(CallCancelledError);
    }
  });

  it('is the end when the client half-closes, and the handler answers', async () => {
    const echo = conn.client(EchoService);
    const reply = await echo.clientStream([{ text: 'finished' }, { text: 'b' }, { text: 'c' }]);
    expect(reply).toMatchObject({ text: 'finished', index: 3 });
    expect(await outcomeOf('finished')).toEqual({ kind: 'completed', received: 3 });
  });

  it('is the end for thirty streams finishing at once on one connection', async () => {
    const echo = conn.client(EchoService);
    const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => echo.clientStream([{ text: `many-${i}` }, { text: 'b' }])));
    expect(replies.map((r) => r.index)).toEqual(Array.from({ length: 30 }, () => 2));
    for (let i = 0; i < 30; i++) expect(await outcomeOf(`many-${i}`)).toEqual({ kind: 'completed', received: 2 });
  });

  it("finds the call's HTTP/2 session in grpc-js's internals (else every end waits the fallback grace)", async () => {
    const raw = new grpc.Server();
    let found: boolean | undefined;
    raw.addService(
      {
        up: {
          path: '/probe.Probe/Up',
          requestStream: true,
          responseStream: false,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      {
        up: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          found = http2SessionOf(call) !== undefined;
          call.on('data', () => undefined);
          call.on('end', () => callback(null, Buffer.alloc(0)));
        },
      },
    );
    const port = await bindServer(raw, '127.0.0.1:0');
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      await new Promise<void>((resolve, reject) => {
        const call = client.makeClientStreamRequest(
          '/probe.Probe/Up',
          (b: Buffer) => b,
          (b: Buffer) => b,
          (err) => (err ? reject(err) : resolve()),
        );
        call.write(Buffer.from('x'));
        call.end();
      });
    } finally {
      client.close();
      await shutdownServer(raw, 1000);
    }
    expect(found).toBe(true);
  });
});
