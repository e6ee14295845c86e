/**
 * A write framed in place whose call ends while part of its bytes waits in
 * a socket write: Node's HTTP/2 sends what the flow-control window allows
 * of a write (a socket write that waits while the peer does not read) and
 * keeps the rest queued on the stream; when keepalive gives the connection
 * up, grpc-js ends the call and destroys the session, Node completes the
 * queued write and lets go of the buffer, grpc-js never calls the write
 * back, and the socket write still reads the buffer when the peer reads
 * again (write-quarantine.ts).
 *
 * Two paths the lead's analysis named do not get there with Node 20 and
 * grpc-js 1.14.7: the peer's RST_STREAM is not read while a socket write is
 * in progress (Node stops reading then: Http2Session::MaybeStopReading), and
 * our own cancel sends its RST_STREAM only after that write (the stream is
 * destroyed after it).
 *
 * Real grpc-js client and server over loopback, with a proxy between them
 * (h2-frame-proxy.ts) that grants the client's flow-control window itself,
 * stops reading the client's socket so its writes back up, and records the
 * client's bytes. The message's buffer is scribbled at its verdict (as a
 * pool reusing it would) and the record shows whether the scribble went out.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EchoRequestSchema, EchoService } from '../../proto/gen/bm/testing/v1/echo_pb.js';
import { addService, bindServer, connect, encoded, isServiceError, shutdownServer } from '../../proto/rpc/index.ts';
import { quarantine, quarantinedCount } from '../../proto/rpc/write-quarantine.ts';
import { H2FrameProxy, windowUpdateFrame } from './h2-frame-proxy.ts';

const MESSAGE_BYTES = 24 << 20;
/**
 * What the test grants after the first window: far more than loopback's
 * socket buffers take (tcp_wmem's 4 MiB maximum plus the proxy's receive
 * buffer), so part of it waits in a socket write; far less than the message,
 * so the rest of the message stays queued on the stream.
 */
const GRANTED_BYTES = 16 << 20;
/** HTTP/2's initial window: what the client sends before the test grants more. */
const INITIAL_WINDOW_BYTES = 65_535;
const HEADROOM = 8;
/** The scribble: a run of it on the wire can only be bytes written after the callback. */
const SCRIBBLE = 0x5a;
const FIRST_STREAM_ID = 1;
const KEEPALIVE_MS = 1_000;

let server: grpc.Server;
let serverPort: number;

beforeAll(async () => {
  server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20 });
  addService(server, EchoService, {
    unary: (req) => ({ text: req.text }),
    async *serverStream() {},
    clientStream: async () => ({}),
    async *bidi(reqs) {
      for await (const _ of reqs);
    },
  });
  serverPort = await bindServer(server, '127.0.0.1:0');
});
afterAll(() => shutdownServer(server, 1000));

interface Outcome {
  /** What the callback said (undefined: no callback). */
  reusable: boolean | undefined;
  /** The call's status code, once it ended. */
  status: number | undefined;
  /** Bytes scribbled into the buffer at the verdict that reached the wire. */
  scribbledBytesOnWire: number;
}

/** Bytes of the client's stream inside runs of at least 256 scribble bytes (DATA frames cut runs at 16 KiB). */
function scribbleOnWire(chunks: Buffer[]): number {
  let total = 0;
  let run = 0;
  const close = (): void => {
    if (run >= 256) total += run;
    run = 0;
  };
  for (const chunk of chunks)
    for (const b of chunk) {
      if (b === SCRIBBLE) run++;
      else close();
    }
  close();
  return total;
}

/**
 * Sends one large message framed in place while the peer stops reading, so
 * part of it waits in a socket write and the rest stays queued on the
 * stream, until keepalive gives the connection up (grpc-js ends the call,
 * then destroys the session and its streams). `honourReusable` false
 * scribbles the buffer at the callback whatever it says, as a sender
 * without the rule did.
 */
async function stallUntilKeepaliveFails(honourReusable: boolean): Promise<Outcome> {
  const proxy = await H2FrameProxy.start(serverPort);
  const conn = connect(`127.0.0.1:${proxy.port}`, {
    inPlaceFraming: true,
    channelOptions: {
      'grpc.max_send_message_length': 64 << 20,
      // Our channels ping every 10 s and give up 10 s later; the same, faster.
      'grpc.keepalive_time_ms': KEEPALIVE_MS,
      'grpc.keepalive_timeout_ms': KEEPALIVE_MS,
    },
  });
  const outcome: Outcome = { reusable: undefined, status: undefined, scribbledBytesOnWire: 0 };
  try {
    const call = conn.duplex(EchoService.method.bidi);
    const responses = (async () => {
      for await (const _ of call);
    })().catch((error: unknown) => {
      outcome.status = isServiceError(error) ? error.code : -1;
    });
    const bytes = toBinary(EchoRequestSchema, create(EchoRequestSchema, { text: 'a'.repeat(MESSAGE_BYTES) }));
    const buffer = Buffer.alloc(HEADROOM + bytes.length);
    buffer.set(bytes, HEADROOM);
    const calledBack = new Promise<void>((resolve) => {
      call.write(encoded(EchoRequestSchema, buffer.subarray(HEADROOM), HEADROOM), (reusable) => {
        outcome.reusable = reusable;
        // The text's bytes only: the protobuf header in front stays as it was.
        if (reusable || !honourReusable) buffer.fill(SCRIBBLE, HEADROOM + 8);
        else quarantine(buffer);
        resolve();
      });
    });
    // The client stops at HTTP/2's initial window: the server's WINDOW_UPDATEs never reach it.
    await proxy.clientDataReached(INITIAL_WINDOW_BYTES, 10_000);
    proxy.forwardToServer = false;
    proxy.readClient(false);
    proxy.toClient(windowUpdateFrame(0, GRANTED_BYTES));
    proxy.toClient(windowUpdateFrame(FIRST_STREAM_ID, GRANTED_BYTES));
    // Keepalive's ping waits behind the stuck socket write; its timeout ends the call and the session.
    await Promise.race([calledBack, new Promise((resolve) => setTimeout(resolve, 6 * KEEPALIVE_MS))]);
    await responses;
    // Now let the socket drain: its write still holds the granted bytes, read from the buffer only now.
    proxy.readClient(true);
    await proxy.clientDataReached(INITIAL_WINDOW_BYTES + GRANTED_BYTES, 10_000);
    outcome.scribbledBytesOnWire = scribbleOnWire(proxy.fromClient);
    return outcome;
  } finally {
    conn.close();
    await proxy.close();
  }
}

describe('a write framed in place whose call ends while its bytes wait for the socket', () => {
  it('is read from its buffer after the call ended: reused then, the reused bytes go out', async () => {
    const outcome = await stallUntilKeepaliveFails(false);
    expect(outcome.status).toBe(grpc.status.UNAVAILABLE);
    // The verdict came with the call's end: grpc-js never called the write back.
    expect(outcome.reusable).toBe(false);
    // Megabytes of scribble inside the granted bytes: read from the buffer after the call had ended.
    expect(outcome.scribbledBytesOnWire).toBeGreaterThan(1 << 20);
  });

  it('gets the verdict not reusable once, so a sender that quarantines puts nothing reused on the wire', async () => {
    const before = quarantinedCount();
    const outcome = await stallUntilKeepaliveFails(true);
    expect(outcome.status).toBe(grpc.status.UNAVAILABLE);
    expect(outcome.reusable).toBe(false);
    expect(quarantinedCount()).toBe(before + 1);
    expect(outcome.scribbledBytesOnWire).toBe(0);
  });
});
