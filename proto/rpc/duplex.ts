/**
 * A bidi call its caller drives message by message, for streams that move
 * bulk data and must bound what they hold: each write says when grpc-js is
 * done with the message's bytes (so a pooled buffer can be reused and a byte
 * budget released), write() answers false past grpc-js's high-water mark,
 * and responses arrive as an async iterable. The typed client's bidi methods
 * pump an iterable instead; use this when the sender needs the feedback.
 */
import type * as grpc from '@grpc/grpc-js';

export interface DuplexCall<I, O> extends AsyncIterable<O> {
  /**
   * Hands one request to grpc-js. `onSent` runs once grpc-js is done with
   * the request's bytes (framed and passed to HTTP/2, or failed); for a call
   * cancelled meanwhile it may never run. Returns false once grpc-js holds
   * more than its high-water mark: await drained() before writing more.
   */
  write(request: I, onSent?: () => void): boolean;
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
  call.once('close', () => (closed = true));
  return {
    write: (request, onSent) => call.write(request, onSent ? () => onSent() : undefined),
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
    cancel: () => call.cancel(),
    [Symbol.asyncIterator]: () => responsesOf<O>(call as grpc.ClientDuplexStream<unknown, unknown>)[Symbol.asyncIterator](),
  };
}
