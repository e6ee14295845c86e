/**
 * The relay's side of a follower's WriteImage: the same block protocol the
 * controller speaks (a start frame, data frames and zero runs in order, the
 * follower acknowledging commits and ending with its own digest), fed from
 * this agent's image feed: committed runs read back from the target, zero
 * runs as lengths. The follower's acknowledgements are what this yields; the
 * relay keeps nothing to send again: after a break the controller resumes the
 * follower from the follower's own checkpoint.
 *
 * The stream runs on the rpc adapter's duplex call, as the controller's does
 * (controller/deploy/stream.ts): data frames go as encoded() bytes with the
 * frame header written in front of the payload, start and zero runs as
 * messages.
 *
 * Bounds: data handed to grpc-js but not yet on the socket stays within
 * MAX_BUFFERED_BYTES (read buffers come from a small pool and go back once
 * HTTP/2 has written them: the rpc adapter frames them in place,
 * proto/rpc/in-place-framing.ts, rather than grpc-js copying each; a buffer
 * whose write had not come back when the call ended is quarantined, never
 * pooled: proto/rpc/write-quarantine.ts); the follower's stream waits for its first
 * acknowledgement before any data goes (until the call is connected grpc-js
 * would buffer without back-pressure).
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { FileHandle } from 'node:fs/promises';
import {
  AgentService,
  ImageFrameSchema,
  type WriteImageAckSchema,
  type WriteImageStartSchema,
} from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { dataFrameMessage, MAX_DATA_FRAME_HEADER_BYTES } from '../../proto/frames/index.ts';
import { connect, type EncodedMessage, GRPC_MESSAGE_HEADER_BYTES, isServiceError, quarantine } from '../../proto/rpc/index.ts';
import { AgentError } from '../errors.ts';
import type { ImageFeed } from './image-feed.ts';

type Ack = MessageInitShape<typeof WriteImageAckSchema>;
type Start = MessageInitShape<typeof WriteImageStartSchema>;
/** A frame to send: a small message (start, zero run) or a data frame already encoded. */
type OutgoingFrame = MessageInitShape<typeof ImageFrameSchema> | EncodedMessage<typeof ImageFrameSchema>;

/** Largest data frame: the controller's chunk size, below grpc-js's default 4 MiB message limit. */
export const RELAY_CHUNK_BYTES = 1024 * 1024;
/**
 * Data handed to grpc-js and not yet written to the socket, per follower.
 * Small: an agent relaying to two followers while it writes its own image
 * has a 128 MiB budget in all.
 */
const MAX_BUFFERED_BYTES = 2 * 1024 * 1024;
/**
 * The follower channel's options. The retry buffer is off: grpc-js calls a
 * write's callback as soon as that buffer holds the message (retrying-call.js,
 * for messages up to its 1 MiB per-call limit), before HTTP/2 has sent it,
 * and a frame here is a view of a read buffer that is reused once its write
 * is called back (framed in place, proto/rpc/in-place-framing.ts). Without the buffer the
 * callback comes after the socket write. Retries are off anyway.
 */
export const RELAY_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_send_message_length': RELAY_CHUNK_BYTES + 64 * 1024,
  'grpc.enable_retries': 0,
  'grpc.per_rpc_retry_buffer_size': 0,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 10_000,
};
/** A relay whose own image stops advancing this long lets its followers go to the controller. */
export const RELAY_STALL_MS = 60_000;

export interface Follower {
  /** host:port of the follower's agent. */
  readonly address: string;
  /** The follower's agent token: its bearer token, never logged. */
  readonly token: string;
}

/** The follower's stream broke or the follower refused it; the status code is the follower's. */
export class FollowerStreamError extends AgentError {
  readonly followerCode: number;
  constructor(address: string, code: number, details: string) {
    super('failed-precondition', `follower ${address}: ${details}`, { follower: address, followerCode: code });
    this.followerCode = code;
  }
}

/** Spare bytes in front of the data read into a buffer: the data frame's header, and gRPC's prefix before it. */
const HEADROOM_BYTES = GRPC_MESSAGE_HEADER_BYTES + MAX_DATA_FRAME_HEADER_BYTES;

/**
 * Read buffers, reused by every relay of the process: a fresh 1 MiB buffer
 * per frame is what makes V8 collect often. At most MAX_FREE_BUFFERS wait
 * here; each relay has about MAX_BUFFERED_BYTES / chunk + 1 in use.
 */
const MAX_FREE_BUFFERS = 6;
const freeBuffers: Buffer[] = [];
const readBuffers = {
  take(): Buffer {
    const reused = freeBuffers.pop();
    if (reused) return reused;
    return Buffer.allocUnsafeSlow(HEADROOM_BYTES + RELAY_CHUNK_BYTES);
  },
  give(buffer: Buffer): void {
    if (freeBuffers.length < MAX_FREE_BUFFERS) freeBuffers.push(buffer);
  },
};

async function readFully(handle: FileHandle, into: Buffer, at: number, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(into, at + done, length - done, position + done);
    if (bytesRead === 0) throw new AgentError('io', `the target ended at ${position + done} while relaying`, { position: position + done });
    done += bytesRead;
  }
}

/**
 * Streams the feed to `follower` from `start.resumeOffset` to the image end
 * and yields the follower's acknowledgements as they come.
 */
export async function* relayToFollower(
  feed: ImageFeed,
  target: FileHandle,
  follower: Follower,
  start: Start,
  signal: AbortSignal,
): AsyncIterable<Ack> {
  // Agents serve plaintext: the follower's token is what authenticates the relay to it.
  const rpc = connect(follower.address, {
    credentials: grpc.credentials.createInsecure(),
    metadata: { authorization: `Bearer ${follower.token}` },
    channelOptions: RELAY_CHANNEL_OPTIONS,
    inPlaceFraming: true,
  });
  const call = rpc.duplex(AgentService.method.writeImage);
  let buffered = 0;
  let accepted = false;
  let over = false;
  let senderError: unknown;
  let wake: (() => void) | undefined;
  const changed = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const waitChange = (): Promise<void> => new Promise((resolve) => (wake = resolve));
  const onAbort = (): void => call.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  // Ends the sender's waits (the feed may not advance for a long time) when this relay ends for any reason.
  const stop = new AbortController();
  const senderSignal = AbortSignal.any([signal, stop.signal]);

  const send = async (frame: OutgoingFrame, dataBytes: number, release?: () => void): Promise<void> => {
    if (over) throw new AgentError('failed-precondition', `follower ${follower.address} ended the stream early`);
    buffered += dataBytes;
    call.write(frame, (reusable) => {
      // Reusable: HTTP/2 has written the frame (framed in place, not copied) and the read buffer may be
      // reused. Otherwise the call ended first and part of the frame may still sit in a socket write.
      if (reusable) release?.();
      else if (release) quarantine(frame);
      buffered -= dataBytes;
      changed();
    });
    while (buffered > MAX_BUFFERED_BYTES && !over) await waitChange();
  };

  const sender = (async (): Promise<void> => {
    const resumeOffset = Number(start.resumeOffset ?? 0n);
    await send({ offset: BigInt(resumeOffset), start }, 0);
    while (!accepted && !over) await waitChange();
    let position = resumeOffset;
    while (position < feed.imageSize) {
      const committed = await feed.waitPast(position, senderSignal, RELAY_STALL_MS);
      for (const run of feed.runs(position, committed)) {
        if (!run.data) {
          await send({ offset: BigInt(run.offset), zeroLength: BigInt(run.length) }, 0);
          continue;
        }
        for (let at = run.offset; at < run.offset + run.length; at += RELAY_CHUNK_BYTES) {
          const length = Math.min(RELAY_CHUNK_BYTES, run.offset + run.length - at);
          const buffer = readBuffers.take();
          await readFully(target, buffer, HEADROOM_BYTES, length, at);
          const data = buffer.subarray(HEADROOM_BYTES, HEADROOM_BYTES + length);
          await send(dataFrameMessage(at, data, HEADROOM_BYTES), length, () => readBuffers.give(buffer));
        }
      }
      position = committed;
    }
    call.end();
  })();
  sender.catch((error: unknown) => {
    senderError ??= error;
    call.cancel();
  });

  try {
    try {
      for await (const ack of call) {
        accepted = true;
        changed();
        yield {
          committedOffset: ack.committedOffset,
          done: ack.done,
          sha256: ack.sha256,
          digestMethod: ack.digestMethod,
          digestAlgorithm: ack.digestAlgorithm,
        };
      }
    } catch (error) {
      // Our own failure (the feed stalled, the target unreadable) cancelled the call: say that, not CANCELLED.
      if (senderError !== undefined) throw senderError;
      if (signal.aborted) throw signal.reason;
      if (isServiceError(error)) throw new FollowerStreamError(follower.address, error.code, error.details || error.message);
      throw error;
    }
    if (senderError !== undefined) throw senderError;
  } finally {
    signal.removeEventListener('abort', onAbort);
    over = true;
    changed();
    stop.abort();
    call.cancel();
    await sender.catch(() => undefined);
    rpc.close();
  }
}
