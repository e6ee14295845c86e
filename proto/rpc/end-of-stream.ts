/**
 * When a client cancels a call whose requests it streams, Node's HTTP/2
 * (under grpc-js's client) first ends the stream's writable side, sending
 * END_STREAM, and then RST_STREAM(CANCEL). On the server grpc-js hands on the
 * END_STREAM as the end of the requests, exactly as for a client that has
 * finished, and reports the cancel only once the RST_STREAM has been read
 * and the stream closed: a millisecond later on an idle loopback, tens of
 * milliseconds on a busy machine. A handler that took the end for a finished
 * upload would then store a truncated one.
 *
 * So the end of a request stream counts only once the server has pinged the
 * connection and read the client's answer: the client queued the RST_STREAM
 * at the moment it cancelled, before it could have seen our PING, and HTTP/2
 * frames are read in order, so by the PING ACK a cancel has been read too.
 * The http2 session is a grpc-js internal (grpc-js is pinned in
 * package-lock.json; test/rpc/end-of-stream.test.ts fails if an upgrade moves
 * it); without it the end waits a fixed grace period instead.
 */
import type * as http2 from 'node:http2';

/** What a handler's request iterator throws when the client cancelled the call. */
export class CallCancelledError extends Error {
  constructor(path: string) {
    super(`${path}: the client cancelled the call`);
    this.name = 'CallCancelledError';
  }
}

/** How long the end waits for a cancel when the connection cannot be pinged. */
const FALLBACK_GRACE_MS = 100;

interface CallInternals {
  readonly call?: { readonly stream?: http2.ServerHttp2Stream };
}

/** The HTTP/2 session a grpc-js server call runs on, or undefined if grpc-js's internals moved. */
export function http2SessionOf(call: object): http2.ServerHttp2Session | undefined {
  const session = (call as CallInternals).call?.stream?.session;
  return session && typeof session.ping === 'function' ? (session as http2.ServerHttp2Session) : undefined;
}

/**
 * Resolves when the end of `call`'s requests was the client's own half-close;
 * throws CallCancelledError when it was the first half of a cancel.
 * `cancelled` is aborted when grpc-js reports the call cancelled.
 */
export async function confirmEndOfRequests(call: object, cancelled: AbortSignal, path: string): Promise<void> {
  if (!cancelled.aborted) {
    await new Promise<void>((resolve) => {
      const timers: NodeJS.Timeout[] = [];
      const done = (): void => {
        for (const timer of timers) clearTimeout(timer);
        cancelled.removeEventListener('abort', done);
        resolve();
      };
      const grace = (): void => void timers.push(setTimeout(done, FALLBACK_GRACE_MS));
      cancelled.addEventListener('abort', done, { once: true });
      const session = http2SessionOf(call);
      // ping() answers false (and fails the callback) with too many pings outstanding (Node's
      // maxOutstandingPings, 10): many streams ending at once on one connection wait the grace instead.
      const pinged =
        session !== undefined &&
        !session.destroyed &&
        session.ping((err) => {
          // grpc-js reports a cancel a few ticks after its frame was read: setImmediate runs after those ticks.
          // A failed ping means the connection is going away; a cancel, if any, is reported within the grace.
          if (err) grace();
          else setImmediate(done);
        });
      if (!pinged) grace();
    });
  }
  if (cancelled.aborted) throw new CallCancelledError(path);
}
