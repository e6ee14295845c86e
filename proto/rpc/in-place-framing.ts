/**
 * gRPC frames every message with a 5-byte header (compressed flag, length).
 * grpc-js does it by allocating a fresh buffer of the message's size plus 5
 * and copying the message into it: for the deploy stream's 1 MiB data
 * frames that copy, and the garbage collections the fresh 1 MiB buffers
 * start (V8 counts them as external memory), were most of the sender's CPU
 * (docs/performance-notes.md). A sender that owns spare bytes in front of an
 * already-encoded message (codec.ts EncodedMessage with headroom) lets the
 * header go there instead: the message is framed in place, and the bytes
 * that reach the socket are the sender's own.
 *
 * That makes grpc-js's write callback the moment the sender may reuse its
 * buffer, so it must not come before the bytes are written: grpc-js calls it
 * early for a message it keeps in its retry buffer (even with retries off),
 * hence IN_PLACE_FRAMING_CHANNEL_OPTIONS. A write not called back before
 * its call ends may still be read from the buffer later: the duplex call
 * says so (duplex.ts OnSent) and the buffer goes to write-quarantine.ts. The hook is grpc-js's identity
 * compression handler, an internal (grpc-js is pinned in package-lock.json;
 * test/rpc/in-place-framing.test.ts fails if an upgrade moves it); compressed
 * channels and unmarked messages take grpc-js's own path.
 */
import type * as grpc from '@grpc/grpc-js';
import { CompressionFilter } from '@grpc/grpc-js/build/src/compression-filter.js';
import { GrpcInternalsChangedError } from './receive-window.ts';

/** gRPC's length-prefixed message header: one flag byte, a 32-bit big-endian length. */
export const GRPC_MESSAGE_HEADER_BYTES = 5;

/**
 * Channel options a connection framing in place must have: no retry buffer,
 * so the write callback runs only once HTTP/2 has written the bytes.
 */
export const IN_PLACE_FRAMING_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.enable_retries': 0,
  'grpc.per_rpc_retry_buffer_size': 0,
};

/** Serialised messages whose buffer has GRPC_MESSAGE_HEADER_BYTES spare bytes in front, owned by the sender. */
const framable = new WeakSet<Buffer>();

/** Marks `bytes` as framable in place: the 5 bytes before it in its ArrayBuffer are the sender's to overwrite. */
export function frameInPlace(bytes: Buffer): Buffer {
  if (bytes.byteOffset < GRPC_MESSAGE_HEADER_BYTES) throw new RangeError('no room for the gRPC message header before the message');
  framable.add(bytes);
  return bytes;
}

interface MessageWriter {
  writeMessage(message: Buffer, compress: boolean): Promise<Buffer>;
}

let installed = false;

/** Makes grpc-js frame marked messages in place; idempotent. Throws GrpcInternalsChangedError if the hook moved. */
export function installInPlaceFraming(): void {
  if (installed) return;
  // The identity handler is not exported; a filter made with no compression options holds one.
  const filter = new CompressionFilter({}, {}) as unknown as { sendCompression?: MessageWriter };
  const identity = filter.sendCompression ? (Object.getPrototypeOf(filter.sendCompression) as MessageWriter | null) : null;
  if (!identity || typeof identity.writeMessage !== 'function')
    throw new GrpcInternalsChangedError('the identity CompressionHandler of compression-filter.js');
  const copying = identity.writeMessage;
  identity.writeMessage = function (this: MessageWriter, message: Buffer, compress: boolean): Promise<Buffer> {
    if (!framable.delete(message)) return copying.call(this, message, compress);
    const framed = Buffer.from(message.buffer, message.byteOffset - GRPC_MESSAGE_HEADER_BYTES, message.length + GRPC_MESSAGE_HEADER_BYTES);
    // Identity encoding: never marked compressed.
    framed[0] = 0;
    framed.writeUInt32BE(message.length, 1);
    return Promise.resolve(framed);
  };
  installed = true;
}
