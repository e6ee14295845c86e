/**
 * A bidi call its caller drives message by message, for streams that move
 * bulk data and must bound what they hold: each write says when grpc-js is
 * done with the message's bytes (so a pooled buffer can be reused and a byte
 * budget released), write() answers false past grpc-js's high-water mark,
 * and responses arrive as an async iterable. The typed client's bidi methods
 * pump an iterable instead; use this when the sender needs the feedback.
 */
import type * as grpc from '@grpc/grpc-js';

/**
 * The verdict on one request's bytes, given exactly once. `reusable` true:
 * grpc-js called the write back while the call was live, so HTTP/2 has put
 * the bytes on the socket and a buffer they were framed in place from may be
 * reused. False: the call ended first (cancelled, failed, or finished). Then
 * grpc-js never calls the write back (its retrying call drops the callbacks
 * of unfinished writes when it reports the status), yet part of the bytes may
 * still sit in a socket write that reads them from the buffer later: when a
 * session is torn down (keepalive timeout, disconnect) Node completes the
 * stream's queued write and lets go of the buffer while the socket write
 * holding its first part waits for the peer (write-quarantine.ts,
 * test/rpc/early-write-callback.test.ts). Such a buffer goes to
 * quarantine(), never back to a pool, and is not simply dropped either.
 */
export type OnSent = (reusable: boolean) => void;

export interface DuplexCall<I, O> extends AsyncIterable<O> {
  /**
   * Hands one request to grpc-js; `onSent` runs once, when grpc-js is done
   * with its bytes or when the call ends first (see OnSent). Returns false
   * once grpc-js holds more than its high-water mark: await drained()
   * before writing more.
   */
  write(request: I, onSent?: OnSent): boolean;
  /** Resolves when grpc-js takes writes again, or the call has ended. */
  drained(): Promise<void>;
  /** No more requests (half-close); responses may still arrive. */
  end(): void;
  /** Ends the call at once on both sides (CANCELLED); a response loop then ends with that status. */
  cancel(): void;
}

/**
 * Iterates a call's responses; leaving the loop early (break, throw)
 * cancels the call instead of leaking it.
 */
export async function* responsesOf<T>(
  call: grpc.ClientReadableStream<unknown> | grpc.ClientDuplexStream<unknown, unknown>,
): AsyncIterable<T> {
  try {
    for await (const message of call) yield message as T;
  } finally {
    call.cancel();
  }
}

export function duplexCall<I, O>(call: grpc.ClientDuplexStream<I, O>): DuplexCall<I, O> {
  let closed = false;
  let ended = false;
  /** Verdicts not given yet, oldest first: at the call's end each gets `false`. */
  const unsent = new Set<(reusable: boolean) => void>();
  /**
   * The call is over as soon as we cancel it or grpc-js reports its status:
   * from then on no write is called back while its bytes may be on the way.
   * Node tears a stream down before it completes the stream's writes (on a
   * later immediate); 'status' reaches us through process.nextTick chains,
   * which run first.
   */
  const end = (): void => {
    if (ended) return;
    ended = true;
    for (const verdict of [...unsent]) verdict(false);
  };
  call.once('close', () => {
    closed = true;
    end();
  });
  // grpc-js emits 'status' for every ending, right after 'error' for a failed one.
  call.once('status', end);
  const write = (request: I, onSent?: OnSent): boolean => {
    if (!onSent) return call.write(request);
    let given = false;
    const verdict = (reusable: boolean): void => {
      if (given) return;
      given = true;
      unsent.delete(verdict);
      onSent(reusable);
    };
    if (ended) {
      // grpc-js will not call it back; the bytes may still be handed to HTTP/2 before the call notices.
      const accepted = call.write(request);
      verdict(false);
      return accepted;
    }
    unsent.add(verdict);
    return call.write(request, () => verdict(!ended));
  };
  return {
    write,
    drained: () =>
      closed || !call.writableNeedDrain
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            const done = (): void => {
              call.off('drain', done);
              call.off('close', done);
              resolve();
            };
            call.on('drain', done);
            call.on('close', done);
          }),
    end: () => call.end(),
    cancel: () => {
      end();
      call.cancel();
    },
    [Symbol.asyncIterator]: () => responsesOf<O>(call as grpc.ClientDuplexStream<unknown, unknown>)[Symbol.asyncIterator](),
  };
}
