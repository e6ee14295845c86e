import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { create, toBinary } from '@bufbuild/protobuf';
import { EchoRequestSchema, EchoResponseSchema, EchoService } from '../../proto/gen/bm/testing/v1/echo_pb.js';
import {
  addService,
  bindServer,
  connect,
  encoded,
  EncodedSchemaMismatchError,
  isServiceError,
  shutdownServer,
  type RpcConnection,
} from '../../proto/rpc/index.ts';

class TeapotError extends Error {}

let server: grpc.Server;
let conn: RpcConnection;
let port: number;
const seenPeers: string[] = [];
let cancelledStreams = 0;
let cancelledBidis = 0;
/** A bidi request with text 'hold' makes the server stop reading until this resolves. */
let held: Promise<void> = Promise.resolve();

beforeAll(async () => {
  server = new grpc.Server();
  addService(
    server,
    EchoService,
    {
      unary: (req) => {
        if (req.text === 'fail') throw new TeapotError('secret internals');
        if (req.text === 'teapot') throw new TeapotError('short and stout');
        return { text: req.text.toUpperCase(), index: req.repeat };
      },
      async *serverStream(req, ctx) {
        try {
          for (let i = 0; i < req.repeat; i++) {
            if (ctx.signal.aborted) return;
            yield { text: req.text, index: i };
            if (req.text === 'slow') await new Promise((r) => setTimeout(r, 5));
          }
        } finally {
          if (ctx.signal.aborted) cancelledStreams++;
        }
      },
      async clientStream(reqs) {
        const parts: string[] = [];
        for await (const r of reqs) parts.push(r.text);
        return { text: parts.join(','), index: parts.length };
      },
      async *bidi(reqs, ctx) {
        let i = 0;
        try {
          for await (const r of reqs) {
            if (r.text === 'hold') await held;
            yield { text: `echo:${r.text.slice(0, 16)}`, index: i++ };
          }
        } finally {
          // A cancelled call's request stream may end before the signal says why: count the abort itself.
          if (ctx.signal.aborted) cancelledBidis++;
          else ctx.signal.addEventListener('abort', () => cancelledBidis++, { once: true });
        }
      },
    },
    {
      interceptors: [
        (ctx) => {
          seenPeers.push(ctx.peer);
          if (ctx.metadata.get('x-deny')[0] === 'yes') throw new TeapotError('denied');
        },
      ],
      toStatus: (err) =>
        err instanceof TeapotError && err.message !== 'secret internals'
          ? { code: grpc.status.FAILED_PRECONDITION, details: err.message }
          : { code: grpc.status.INTERNAL, details: 'internal error' },
    },
  );
  port = await bindServer(server, '127.0.0.1:0');
  conn = connect(`127.0.0.1:${port}`);
});

afterAll(async () => {
  conn.close();
  await shutdownServer(server, 1000);
});

describe('grpc-js adapter over protobuf-es descriptors', () => {
  it('serves and calls a unary method with typed messages', async () => {
    const echo = conn.client(EchoService);
    const res = await echo.unary({ text: 'hello', repeat: 7 });
    expect(res.text).toBe('HELLO');
    expect(res.index).toBe(7);
    expect(res.$typeName).toBe('bm.testing.v1.EchoResponse');
  });

  it('streams server responses in order', async () => {
    const echo = conn.client(EchoService);
    const got: number[] = [];
    for await (const r of echo.serverStream({ text: 'x', repeat: 500 })) got.push(r.index);
    expect(got).toEqual(Array.from({ length: 500 }, (_, i) => i));
  });

  it('collects a client stream, including large ones under backpressure', async () => {
    const echo = conn.client(EchoService);
    async function* many() {
      for (let i = 0; i < 2000; i++) yield { text: String(i % 10) };
    }
    const res = await echo.clientStream(many());
    expect(res.index).toBe(2000);
    expect(res.text.split(',').length).toBe(2000);
  });

  it('runs a bidi stream message by message', async () => {
    const echo = conn.client(EchoService);
    const got: string[] = [];
    for await (const r of echo.bidi([{ text: 'a' }, { text: 'b' }, { text: 'c' }])) got.push(`${r.index}:${r.text}`);
    expect(got).toEqual(['0:echo:a', '1:echo:b', '2:echo:c']);
  });

  it('drives a duplex call message by message: sent callbacks, responses in order, encoded bytes passed through', async () => {
    const call = conn.duplex(EchoService.method.bidi);
    const sent: number[] = [];
    call.write({ text: 'a' }, () => sent.push(0));
    call.write(encoded(EchoRequestSchema, Buffer.from(toBinary(EchoRequestSchema, create(EchoRequestSchema, { text: 'pre' })))), () =>
      sent.push(1),
    );
    call.write({ text: 'c' }, () => sent.push(2));
    call.end();
    const got: string[] = [];
    for await (const r of call) got.push(`${r.index}:${r.text}`);
    expect(got).toEqual(['0:echo:a', '1:echo:pre', '2:echo:c']);
    expect(sent.sort()).toEqual([0, 1, 2]);
  });

  it('refuses bytes encoded as another message type instead of sending them', async () => {
    const call = conn.duplex(EchoService.method.bidi);
    const wrong = encoded(EchoResponseSchema, Buffer.from(toBinary(EchoResponseSchema, create(EchoResponseSchema, { text: 'x' }))));
    // The types refuse it too; a cast stands for a caller that got around them.
    call.write(wrong as never);
    call.end();
    const failure = await (async () => {
      for await (const _ of call) void _;
    })().catch((e: unknown) => e);
    expect(isServiceError(failure) && failure.code).toBe(grpc.status.INTERNAL);
    expect(isServiceError(failure) && failure.details).toContain(
      new EncodedSchemaMismatchError('bm.testing.v1.EchoRequest', 'bm.testing.v1.EchoResponse').message,
    );
  });

  it('answers false on write while the server reads nothing, and drains once it reads again', async () => {
    let release = (): void => undefined;
    held = new Promise<void>((resolve) => (release = resolve));
    const call = conn.duplex(EchoService.method.bidi);
    const big = 'x'.repeat(256 * 1024);
    let sent = 0;
    let written = 1;
    call.write({ text: 'hold' }, () => sent++);
    // The server's buffers, the 64 KiB HTTP/2 windows and the socket's take the first MiBs; then grpc-js stops sending.
    let stalled = false;
    while (!stalled && written < 1000) {
      written++;
      if (!call.write({ text: big }, () => sent++))
        stalled = await Promise.race([call.drained().then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 300))]);
    }
    expect(stalled).toBe(true);
    expect(sent).toBeLessThan(written);
    release();
    await call.drained();
    call.end();
    let responses = 0;
    for await (const _ of call) responses++;
    expect(responses).toBe(written);
    expect(sent).toBe(written);
  });

  it('cancels a duplex call on both sides', async () => {
    let release = (): void => undefined;
    held = new Promise<void>((resolve) => (release = resolve));
    const before = cancelledBidis;
    const call = conn.duplex(EchoService.method.bidi);
    call.write({ text: 'first' });
    call.write({ text: 'hold' });
    const reading = (async () => {
      const got: string[] = [];
      for await (const r of call) {
        got.push(r.text);
        call.cancel();
      }
      return got;
    })();
    const failure = await reading.catch((e: unknown) => e);
    expect(isServiceError(failure) && failure.code).toBe(grpc.status.CANCELLED);
    release();
    await expect.poll(() => cancelledBidis, { timeout: 2000 }).toBe(before + 1);
  });

  it('maps a typed error to its status and hides unknown ones', async () => {
    const echo = conn.client(EchoService);
    const teapot = await echo.unary({ text: 'teapot' }).catch((e: unknown) => e);
    expect(isServiceError(teapot) && teapot.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(isServiceError(teapot) && teapot.details).toBe('short and stout');
    const hidden = await echo.unary({ text: 'fail' }).catch((e: unknown) => e);
    expect(isServiceError(hidden) && hidden.code).toBe(grpc.status.INTERNAL);
    expect(isServiceError(hidden) && hidden.details).not.toContain('secret');
  });

  it('runs interceptors before every call kind and lets them refuse it', async () => {
    const echo = conn.client(EchoService);
    const before = seenPeers.length;
    const denied = { metadata: { 'x-deny': 'yes' } };
    await expect(echo.unary({ text: 'a' }, denied)).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    await expect(echo.clientStream([{ text: 'a' }], denied)).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    await expect(async () => {
      for await (const _ of echo.serverStream({ text: 'a', repeat: 3 }, denied)) void _;
    }).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    await expect(async () => {
      for await (const _ of echo.bidi([{ text: 'a' }], denied)) void _;
    }).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    expect(seenPeers.length - before).toBe(4);
  });

  it('cancels the server side when the client stops reading early', async () => {
    const echo = conn.client(EchoService);
    const before = cancelledStreams;
    let n = 0;
    for await (const _ of echo.serverStream({ text: 'slow', repeat: 10_000 })) {
      void _;
      if (++n === 3) break;
    }
    await expect.poll(() => cancelledStreams, { timeout: 2000 }).toBe(before + 1);
  });

  it('answers a malformed request body with an error and keeps serving', async () => {
    const raw = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      raw.makeUnaryRequest(
        '/bm.testing.v1.EchoService/Unary',
        (b: Buffer) => b,
        (b: Buffer) => b,
        garbage,
        (e) => resolve(e),
      );
    });
    raw.close();
    expect(err?.code).toBe(grpc.status.INTERNAL);
    const echo = conn.client(EchoService);
    expect((await echo.unary({ text: 'still' })).text).toBe('STILL');
    // A well-formed body of the same method still decodes through the same path.
    expect(toBinary(EchoRequestSchema, create(EchoRequestSchema, { text: 'x' })).length).toBeGreaterThan(0);
  });

  it('honours a deadline on the client', async () => {
    const echo = conn.client(EchoService);
    await expect(async () => {
      for await (const _ of echo.serverStream({ text: 'slow', repeat: 10_000 }, { timeoutMs: 50 })) void _;
    }).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
  });
});
