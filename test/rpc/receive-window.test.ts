/**
 * The widened HTTP/2 receive window, observed on the wire: while the server
 * handler reads nothing, a client can flush 12 MiB of messages into a server
 * bound with a 16 MiB window, and not into one with grpc-js's 64 KiB default.
 * Also guards the grpc-js internals it relies on.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { bindServer, bindServerWithReceiveWindow, shutdownServer } from '../../proto/rpc/index.ts';

const same = (b: Buffer): Buffer => b;
const method = {
  path: '/bm.testing.Window/Push',
  requestStream: true,
  responseStream: false,
  requestSerialize: same,
  requestDeserialize: same,
  responseSerialize: same,
  responseDeserialize: same,
  originalName: 'push',
};
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** How many of 48 × 256 KiB messages the client got flushed within 1.5 s while the server read none. */
async function flushedWhileServerIdle(bind: (server: grpc.Server) => Promise<number>): Promise<number> {
  let release = (): void => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 1 << 20 });
  server.addService({ push: method } as grpc.ServiceDefinition, {
    push: (call: grpc.ServerReadableStream<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      call.pause();
      void held.then(() => {
        call.resume();
        call.on('data', () => undefined);
        call.on('end', () => done(null, Buffer.alloc(0)));
      });
    },
  });
  const port = await bind(server);
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  cleanups.push(async () => {
    release();
    client.close();
    await shutdownServer(server, 1000);
  });
  let flushed = 0;
  const call = client.makeClientStreamRequest('/bm.testing.Window/Push', same, same, () => undefined);
  const message = Buffer.alloc(256 * 1024, 7);
  for (let i = 0; i < 48; i++) call.write(message, () => flushed++);
  await new Promise((r) => setTimeout(r, 1500));
  call.end();
  return flushed;
}

describe('HTTP/2 receive window of a grpc-js server', () => {
  it('lets a client keep 12 MiB in flight with a 16 MiB window, and not with the default', async () => {
    const wide = await flushedWhileServerIdle((s) => bindServerWithReceiveWindow(s, '127.0.0.1:0', 16 << 20));
    const narrow = await flushedWhileServerIdle((s) => bindServer(s, '127.0.0.1:0'));
    expect(wide).toBe(48);
    expect(narrow).toBeLessThan(8);
  });
});
