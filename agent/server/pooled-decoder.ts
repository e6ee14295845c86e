/**
 * Reused buffers for the image frames the agent receives. grpc-js gathers
 * each message into a fresh buffer (its stream decoder concatenates the
 * HTTP/2 chunks), so a deploy allocated a 1 MiB ArrayBuffer per frame: about
 * 1 GiB of external memory per GiB streamed, which is what starts V8's major
 * GCs (dozens per GiB for a tiny heap; docs/performance-notes.md). This replaces the decoder's `write` with one that gathers
 * large messages into pooled buffers; the image writer hands a frame's
 * buffer back (`releaseFrameBuffer`) once its write has finished, and the
 * next frame reuses it. A message nobody releases (any other call) is left
 * to the GC, as before.
 *
 * It reaches into grpc-js (build/src/stream-decoder.js, pinned in
 * package-lock.json) the way proto/rpc/receive-window.ts does; the decoder's
 * contract is small (gRPC's length-prefixed framing: a flag byte, a 32-bit
 * big-endian length, the message), and pooled-decoder.test.ts checks it
 * against the original on the same input cut at random places.
 */
import { StreamDecoder } from '@grpc/grpc-js/build/src/stream-decoder.js';
import { dataFramePayloadStart, MAX_DATA_FRAME_HEADER_BYTES } from '../../proto/frames/index.ts';
import { AlignedSlots, DIRECT_ALIGN } from '../disk/index.ts';

const PREFIX = 5;
/** Messages below this are small and rare (acknowledgements, start frames): plain allocations. */
const POOLED_MIN_BYTES = 64 * 1024;
/**
 * Pooled buffers come in multiples of this. A data frame's size grows by a
 * byte when its offset's varint does (at 2 MiB, 256 MiB, 32 GiB): pooled by
 * exact size, each step started a new pool and left the old one's free
 * buffers (up to MAX_FREE_PER_SIZE MiB) held for nothing.
 */
const CAPACITY_STEP = 64 * 1024;
/** Free buffers kept per capacity; a deploy's frames are one capacity (the chunk size), with writes in flight. */
const MAX_FREE_PER_SIZE = 12;

/**
 * Data frames of up to a MiB are gathered into aligned memory instead, placed
 * so that the payload starts on a DIRECT_ALIGN boundary: the image writer
 * then writes it with O_DIRECT, past the page cache (agent/disk/direct-io.ts).
 * To know where the payload starts, the decoder waits for the first bytes of
 * the message (the frame header, at most PEEK_BYTES) before placing it.
 * When every slot is lent (frames queued in grpc-js and writes in flight),
 * a frame takes a pooled buffer as before and is written through the cache.
 */
const ALIGNED_PAYLOAD_BYTES = 1024 * 1024;
const ALIGNED_SLOTS = 24;
const PEEK_BYTES = MAX_DATA_FRAME_HEADER_BYTES;
const slots = new AlignedSlots(DIRECT_ALIGN + ALIGNED_PAYLOAD_BYTES, ALIGNED_SLOTS);

/** A message buffer in an aligned slot with its payload at `payloadStart` on the boundary, or undefined. */
function acquireAligned(size: number, payloadStart: number): Buffer | undefined {
  if (DIRECT_ALIGN + size - payloadStart > slots.slotBytes) return undefined;
  const slot = slots.take();
  if (slot === undefined) return undefined;
  return Buffer.from(slot.buffer, slot.byteOffset + DIRECT_ALIGN - PREFIX - payloadStart, PREFIX + size);
}

const free = new Map<number, ArrayBuffer[]>();
/** Buffers handed out by the decoder and not yet back: only these may be released. */
const lent = new WeakSet<ArrayBufferLike>();

function acquire(size: number): Buffer {
  if (size < POOLED_MIN_BYTES) return Buffer.allocUnsafe(size);
  const capacity = Math.ceil(size / CAPACITY_STEP) * CAPACITY_STEP;
  const backing = free.get(capacity)?.pop() ?? (Buffer.allocUnsafeSlow(capacity).buffer as ArrayBuffer);
  lent.add(backing);
  return Buffer.from(backing, 0, size);
}

/**
 * Gives back the pooled buffer under `bytes` (a view into a received
 * message): call it once nothing reads those bytes any more. Anything else
 * (a buffer the decoder did not lend, one already given back) is ignored.
 */
export function releaseFrameBuffer(bytes: Uint8Array): void {
  if (slots.owns(bytes)) return slots.give(bytes);
  const backing = bytes.buffer;
  if (!lent.has(backing)) return;
  lent.delete(backing);
  const capacity = backing.byteLength;
  const list = free.get(capacity) ?? [];
  if (list.length < MAX_FREE_PER_SIZE) list.push(backing as ArrayBuffer);
  free.set(capacity, list);
}

interface DecoderState {
  readonly prefix: Buffer;
  prefixFilled: number;
  /** The first bytes of a large message not yet placed (its size in `peekSize`, -1 when none is waiting). */
  readonly peek: Buffer;
  peekFilled: number;
  peekSize: number;
  message: Buffer | undefined;
  messageFilled: number;
}

const states = new WeakMap<object, DecoderState>();

/** The decoder's write: framed messages (prefix included, as grpc-js expects them) completed by `data`. */
/** What the replaced write reads of grpc-js's decoder: its limit, set by its constructor. */
interface DecoderFields {
  readonly maxReadMessageLength: number;
  /** grpc-js's own state: 0 (NO_DATA) between messages. */
  readonly readState: number;
}

let originalWrite: ((this: unknown, data: Buffer) => Buffer[]) | undefined;

function pooledWrite(this: DecoderFields, data: Buffer): Buffer[] {
  let state = states.get(this);
  // A decoder that was mid-message when this was installed finishes that message its own way.
  if (state === undefined && this.readState !== 0 && originalWrite) return originalWrite.call(this, data);
  if (state === undefined)
    states.set(
      this,
      (state = {
        prefix: Buffer.alloc(PREFIX),
        prefixFilled: 0,
        peek: Buffer.alloc(PEEK_BYTES),
        peekFilled: 0,
        peekSize: -1,
        message: undefined,
        messageFilled: 0,
      }),
    );
  const messages: Buffer[] = [];
  let at = 0;
  while (at < data.length) {
    if (state.peekSize >= 0) {
      const size = state.peekSize;
      const take = Math.min(Math.min(size, PEEK_BYTES) - state.peekFilled, data.length - at);
      data.copy(state.peek, state.peekFilled, at, at + take);
      state.peekFilled += take;
      at += take;
      if (state.peekFilled < Math.min(size, PEEK_BYTES)) break;
      const payloadStart = dataFramePayloadStart(state.peek, state.peekFilled, size);
      const message = (payloadStart !== undefined ? acquireAligned(size, payloadStart) : undefined) ?? acquire(PREFIX + size);
      state.prefix.copy(message, 0);
      state.peek.copy(message, PREFIX, 0, state.peekFilled);
      state.message = message;
      state.messageFilled = PREFIX + state.peekFilled;
      state.peekSize = -1;
      state.peekFilled = 0;
      if (state.messageFilled === message.length) {
        messages.push(message);
        state.message = undefined;
      }
      continue;
    }
    if (state.message === undefined) {
      const take = Math.min(PREFIX - state.prefixFilled, data.length - at);
      data.copy(state.prefix, state.prefixFilled, at, at + take);
      state.prefixFilled += take;
      at += take;
      if (state.prefixFilled < PREFIX) break;
      const size = state.prefix.readUInt32BE(1);
      if (this.maxReadMessageLength !== -1 && size > this.maxReadMessageLength) {
        throw new Error(`Received message larger than max (${size} vs ${this.maxReadMessageLength})`);
      }
      state.prefixFilled = 0;
      if (PREFIX + size >= POOLED_MIN_BYTES) {
        state.peekSize = size;
        continue;
      }
      const message = acquire(PREFIX + size);
      state.prefix.copy(message, 0);
      if (size === 0) {
        messages.push(message);
        continue;
      }
      state.message = message;
      state.messageFilled = PREFIX;
      continue;
    }
    const take = Math.min(state.message.length - state.messageFilled, data.length - at);
    data.copy(state.message, state.messageFilled, at, at + take);
    state.messageFilled += take;
    at += take;
    if (state.messageFilled === state.message.length) {
      messages.push(state.message);
      state.message = undefined;
    }
  }
  return messages;
}

let installed = false;

/** Makes every grpc-js stream decoder in this process gather large messages into pooled buffers. */
export function installPooledDecoder(): void {
  if (installed) return;
  if (typeof StreamDecoder !== 'function' || typeof StreamDecoder.prototype.write !== 'function') {
    throw new Error('grpc-js internals changed (StreamDecoder.prototype.write is missing); agent/server/pooled-decoder.ts needs updating');
  }
  originalWrite = StreamDecoder.prototype.write as (this: unknown, data: Buffer) => Buffer[];
  StreamDecoder.prototype.write = pooledWrite as unknown as typeof StreamDecoder.prototype.write;
  installed = true;
}
