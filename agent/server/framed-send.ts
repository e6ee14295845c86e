/**
 * Sending large messages without grpc-js's framing copy. grpc-js frames
 * every message it sends by copying it behind gRPC's 5-byte prefix into a
 * fresh buffer (build/src/compression-filter.js, IdentityHandler's
 * writeMessage): a relay forwarding 1 MiB frames to two followers made two
 * 1 MiB ArrayBuffers of garbage per frame, which V8 lets pile up as external
 * memory before it collects (docs/performance-notes.md). A sender that owns
 * spare bytes in front of its messages marks their buffer with
 * `allowFramingInPlace`; the replaced writeMessage then writes the prefix
 * into those bytes and hands grpc-js a view. The sender must keep the bytes
 * unchanged until the write's callback, which grpc-js calls once HTTP/2 has
 * written them to the socket (subchannel-call.js), not when it has copied
 * them. Anything else (compressed calls, unmarked buffers) goes the original
 * way.
 *
 * It reaches into grpc-js (pinned in package-lock.json) like
 * pooled-decoder.ts; test/agent/framed-send.test.ts checks the bytes against
 * the original's.
 */
import { CompressionFilter } from '@grpc/grpc-js/build/src/compression-filter.js';

/** gRPC's message prefix: a compressed-flag byte and a 32-bit big-endian length. */
export const GRPC_PREFIX_BYTES = 5;

type WriteMessage = (this: unknown, message: Buffer, compress: boolean) => Promise<Buffer>;

/** Backing memory whose owner keeps GRPC_PREFIX_BYTES spare in front of every message it sends from it. */
const framable = new WeakSet<ArrayBufferLike>();

/**
 * Lets messages that are views of `buffer`'s memory be framed in place: the
 * caller promises the GRPC_PREFIX_BYTES before each such message are its own
 * and unused, and that it leaves the message alone until its write callback.
 */
export function allowFramingInPlace(buffer: Uint8Array): void {
  framable.add(buffer.buffer);
}

let original: WriteMessage | undefined;

async function framedWriteMessage(this: unknown, message: Buffer, compress: boolean): Promise<Buffer> {
  if (compress || message.byteOffset < GRPC_PREFIX_BYTES || !framable.has(message.buffer) || original === undefined) {
    if (original === undefined) throw new Error('agent/server/framed-send.ts: writeMessage called before install');
    return original.call(this, message, compress);
  }
  const framed = Buffer.from(message.buffer as ArrayBuffer, message.byteOffset - GRPC_PREFIX_BYTES, message.length + GRPC_PREFIX_BYTES);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  return framed;
}

/** Makes every grpc-js call of this process frame marked messages in place. */
export function installFramedSend(): void {
  if (original !== undefined) return;
  // IdentityHandler is not exported; a filter made without options holds one.
  const filter = new CompressionFilter({}, {}) as unknown as { sendCompression?: object };
  const handler = filter.sendCompression === undefined ? undefined : (Object.getPrototypeOf(filter.sendCompression) as object | null);
  const writeMessage = handler === null || handler === undefined ? undefined : (handler as { writeMessage?: unknown }).writeMessage;
  if (handler === null || handler === undefined || typeof writeMessage !== 'function') {
    throw new Error('grpc-js internals changed (IdentityHandler.writeMessage is missing); agent/server/framed-send.ts needs updating');
  }
  original = writeMessage as WriteMessage;
  (handler as { writeMessage: WriteMessage }).writeMessage = framedWriteMessage;
}
