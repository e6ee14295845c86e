import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { create, toBinary } from '@bufbuild/protobuf';
import { EchoRequestSchema, EchoService } from '../../proto/gen/bm/testing/v1/echo_pb.js';
import { addService, bindServer, connect, isServiceError, shutdownServer, type RpcConnection } from '../../proto/rpc/index.ts';

class TeapotError extends Error {}

let server: grpc.Server;
let conn: RpcConnection;
let port: number;
const seenPeers: string[] = [];
let cancelledStreams = 0;

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
      async *bidi(reqs) {
        let i = 0;
        for await (const r of reqs) yield { text: `echo:${r.text}`, index: i++ };
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
