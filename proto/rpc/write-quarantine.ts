/**
 * Where buffers go whose write did not come back before its call ended.
 *
 * A message framed in place (in-place-framing.ts) is the sender's own
 * buffer all the way to the socket. Node's HTTP/2 may split one write: the
 * bytes the flow-control window allows go into the session's socket write,
 * which waits in libuv while the peer does not read; the rest stays queued
 * on the stream with the write's request. When grpc-js tears the session
 * down meanwhile (keepalive timeout, disconnect), Node destroys the stream,
 * completes that request with ECANCELED and so stops referencing the
 * buffer (node_http2.cc Http2Stream::Destroy), but the socket write still
 * holds a pointer into it and sends it whenever the peer reads again.
 * grpc-js never calls such a write back (its retrying call drops the
 * callbacks of unfinished writes when it reports the status). A buffer
 * reused then puts other bytes under the old frame's header; a buffer
 * nobody references may be freed, and its memory handed to the next
 * allocation of the same size, under libuv. test/rpc/early-write-callback.test.ts
 * shows the bytes being read from the buffer after the call ended.
 *
 * Such a buffer is held here for QUARANTINE_MS and then only dropped, never
 * returned to a pool.
 */

/**
 * How long a buffer whose write was not called back before its call ended
 * stays referenced. The danger lasts until the socket write that may hold
 * part of it completes or the socket closes: at once for a peer that is
 * gone (the write fails), as soon as it reads for a peer that was only
 * slow. Only a peer that stops reading for longer and then reads again
 * outlives it; what it would receive then is a stream it no longer expects,
 * and the block protocol's offsets and final digest catch a damaged image.
 * The cost is bounded: one call ends with at most its unsent writes
 * outstanding (a few MiB for a deploy stream or a relay), held for two
 * minutes; a normal end has none.
 */
export const QUARANTINE_MS = 120_000;

/** Buffers held until their time is up, with when that is. */
const held = new Map<object, number>();
let sweep: NodeJS.Timeout | undefined;

function sweepExpired(): void {
  sweep = undefined;
  const now = Date.now();
  let next = Number.POSITIVE_INFINITY;
  for (const [buffer, until] of held) {
    if (until <= now) held.delete(buffer);
    else next = Math.min(next, until);
  }
  if (held.size > 0) schedule(next - now);
}

function schedule(inMs: number): void {
  if (sweep) return;
  // unref: a held buffer never keeps a process alive that is otherwise done.
  sweep = setTimeout(sweepExpired, Math.max(inMs, 0)).unref();
}

/**
 * Keeps `buffer` (or a view of it: any object that references its memory)
 * alive for `ms`, then forgets it. The caller must not reuse it: it is the
 * garbage collector's afterwards.
 */
export function quarantine(buffer: object, ms = QUARANTINE_MS): void {
  held.set(buffer, Date.now() + ms);
  schedule(ms);
}

/** Buffers held now (for tests and metrics). */
export function quarantinedCount(): number {
  return held.size;
}
