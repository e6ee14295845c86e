/**
 * Streams an image to a node's agent: only the extents that hold data travel
 * as bytes, holes as a length. The agent acknowledges what it has made
 * durable; each acknowledgement is checkpointed (in MySQL, by the caller), so
 * a broken stream, or another controller taking the node over, resumes at the
 * last committed offset instead of starting again. The agent's digest of the
 * written image is compared with the image's raw digest before anything else
 * happens to the node.
 *
 * A data extent goes to grpc-js as a view of the image source's (pooled)
 * buffer with the frame header, and gRPC's message header, written in the
 * spare bytes in front of it (the connection frames in place: proto/rpc/
 * in-place-framing.ts), and goes back to the source's pool once HTTP/2 has
 * written it: no copy between the image file and the socket. A frame whose
 * call ended before its write came back is quarantined instead, never
 * pooled (proto/rpc/duplex.ts OnSent).
 *
 * Two bounds keep a stream honest (tuning.ts): data handed to grpc-js but
 * not yet on the socket (the controller's memory per stream), and data sent
 * but not yet acknowledged as committed (what a broken stream sends again).
 * A third is shared: the controller-wide budget of data handed to grpc-js
 * but not yet on a socket, over all streams (buffer-budget.ts).
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import { AgentService, ImageFrameSchema } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { type EncodedMessage, quarantine } from '../../proto/rpc/index.ts';
import type { ImageSource } from '../images/index.ts';
import type { AgentConnection } from './agent-client.ts';
import type { ExpectedDigest } from './digest.ts';
import { DeployChecksumError, DeployStreamError } from './errors.ts';
import { dataFrameMessage } from './frame-codec.ts';
import { DEPLOY_BUFFER_BUDGET, type BufferBudget } from './buffer-budget.ts';
import { checkTuning, DEFAULT_TUNING, type StreamTuning } from './tuning.ts';

export interface StreamOptions {
  readonly nodeUuid: string;
  /** Start here (a checkpointed committed offset); 0 for a fresh deploy. */
  readonly resumeOffset: number;
  /** Persist a committed offset (called in order, only with growing values). */
  readonly checkpoint: (committedOffset: number) => Promise<void>;
  readonly expected: ExpectedDigest;
  /** Sent in the start: lets the agent relay this image to followers (agent/server/relay-image.ts). */
  readonly imageId?: string;
  readonly tuning?: StreamTuning;
  readonly signal?: AbortSignal;
  /** Shared by all streams of the controller (buffer-budget.ts); the process-wide one by default. */
  readonly budget?: BufferBudget;
}

export interface StreamResult {
  readonly sha256: string;
  readonly digestMethod: string;
  readonly committedOffset: number;
  /** Bytes of data sent in this stream (holes not counted). */
  readonly dataBytesSent: number;
  readonly frames: number;
}

/** What a stream got done before it broke: the caller resumes from committedOffset. */
export interface StreamProgress {
  committedOffset: number;
  dataBytesSent: number;
  frames: number;
}

/** A frame to send: a small message (start, zero run) or a data frame already encoded by frame-codec.ts. */
type OutgoingFrame = MessageInitShape<typeof ImageFrameSchema> | EncodedMessage<typeof ImageFrameSchema>;

/** A one-shot waiter list: wake() resolves everyone waiting now. */
class Waiters {
  #waiting: (() => void)[] = [];
  wait(): Promise<void> {
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
  wake(): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const resolve of waiting) resolve();
  }
}

/**
 * Runs one WriteImage stream from options.resumeOffset to the image end.
 * `progress` is updated as acknowledgements arrive, so after a failure the
 * caller knows where to resume.
 */
export async function streamImage(
  agent: AgentConnection,
  source: ImageSource,
  options: StreamOptions,
  progress: StreamProgress = { committedOffset: options.resumeOffset, dataBytesSent: 0, frames: 0 },
): Promise<StreamResult> {
  const tuning = options.tuning ?? DEFAULT_TUNING;
  checkTuning(tuning);
  progress.committedOffset = options.resumeOffset;
  const call = agent.rpc.duplex(AgentService.method.writeImage);
  const onAbort = (): void => call.cancel();
  if (options.signal?.aborted) call.cancel();
  options.signal?.addEventListener('abort', onAbort, { once: true });

  const changed = new Waiters();
  const budget = options.budget ?? DEPLOY_BUFFER_BUDGET;
  /** Aborted when the stream is over: a frame still waiting for budget gives up. */
  const over = new AbortController();
  /** Budget bytes this stream holds; what is left when it ends goes back at once (grpc-js may never call back for a cancelled call). */
  let held = 0;
  let buffered = 0;
  let dataSent = 0;
  /** (frame end offset, data bytes sent up to and including it), to learn how much data a commit covers. */
  const sentMarks: { end: number; data: number }[] = [];
  let dataCommitted = 0;
  let finished = false;
  let accepted = false;
  let startOffset = options.resumeOffset;
  let callError: unknown;

  const advanceCommit = (offset: number): void => {
    while (sentMarks.length > 0 && sentMarks[0]!.end <= offset) dataCommitted = sentMarks.shift()!.data;
    changed.wake();
  };

  const send = async (frame: OutgoingFrame, dataBytes: number, end: number, release?: () => void): Promise<void> => {
    // Do not run further ahead of the last commit than maxUncommittedBytes.
    while (dataBytes > 0 && dataSent + dataBytes - dataCommitted > tuning.maxUncommittedBytes && !finished && callError === undefined)
      await changed.wait();
    const ended = (): unknown =>
      callError ?? new DeployStreamError(`node ${options.nodeUuid}: the agent ended the stream early`, { node: options.nodeUuid });
    if (callError !== undefined || finished) throw ended();
    await budget.acquire(dataBytes, over.signal).catch(() => {
      throw ended();
    });
    if (over.signal.aborted) {
      budget.release(dataBytes);
      throw ended();
    }
    held += dataBytes;
    buffered += dataBytes;
    dataSent += dataBytes;
    sentMarks.push({ end, data: dataSent });
    progress.dataBytesSent += dataBytes;
    progress.frames++;
    call.write(frame, (reusable) => {
      // Reusable: HTTP/2 has written the frame, the image source may reuse the buffer. Otherwise the call
      // ended first and part of the frame may still sit in a socket write: the chunk never goes back to
      // the pool, and stays referenced until that write is surely over (proto/rpc/write-quarantine.ts).
      if (reusable) release?.();
      else if (release) quarantine(frame);
      buffered -= dataBytes;
      if (!over.signal.aborted) {
        held -= dataBytes;
        budget.release(dataBytes);
      }
      changed.wake();
    });
    while (buffered > tuning.maxBufferedBytes && callError === undefined && !finished) await changed.wait();
  };

  const sender = (async (): Promise<void> => {
    await send(
      {
        offset: BigInt(options.resumeOffset),
        start: {
          imageSize: BigInt(source.virtualSize),
          resumeOffset: BigInt(options.resumeOffset),
          commitIntervalBytes: BigInt(tuning.commitIntervalBytes),
          digestAlgorithm: options.expected.algorithm,
          // The image's key (fan-out's, or the digest): an agent that committed more of these bytes than our
          // checkpoint says continues there, and a relay serves a follower only the image it writes itself.
          imageId: options.imageId ?? `${options.expected.algorithm}:${options.expected.hex}`,
        },
      },
      0,
      options.resumeOffset,
    );
    // Hold the data until the agent has accepted the start (target open, image fits): until the
    // call is connected grpc-js takes messages without back-pressure, and would buffer up to
    // maxUncommittedBytes of them, about the whole image in RSS (docs/performance-notes.md).
    while (!accepted && callError === undefined && !finished) await changed.wait();
    // The acceptance names where to continue: our resume offset, or the agent's own committed offset when further.
    for await (const extent of source.extents(startOffset)) {
      if (extent.kind === 'data') {
        await send(
          dataFrameMessage(extent.offset, extent.data, extent.headroom ?? 0),
          extent.data.length,
          extent.offset + extent.data.length,
          extent.release,
        );
      } else {
        await send({ offset: BigInt(extent.offset), zeroLength: BigInt(extent.length) }, 0, extent.offset + extent.length);
      }
    }
    call.end();
  })();
  sender.catch((error: unknown) => {
    callError ??= error;
    // A failing image source must not leave a half-open stream on the agent.
    call.cancel();
  });

  let final: { sha256: string; method: string; algorithm: string; committed: number } | undefined;
  try {
    for await (const ack of call) {
      const offset = Number(ack.committedOffset);
      if (!accepted) {
        if (offset < options.resumeOffset || offset > source.virtualSize) {
          callError ??= new DeployStreamError(
            `node ${options.nodeUuid}: the agent accepted the stream at ${offset}, outside ${options.resumeOffset}..${source.virtualSize}`,
            { node: options.nodeUuid, committedOffset: offset },
          );
          call.cancel();
          break;
        }
        startOffset = offset;
        accepted = true;
        changed.wake();
      }
      if (offset > progress.committedOffset) {
        progress.committedOffset = offset;
        advanceCommit(offset);
        await options.checkpoint(offset);
      }
      if (ack.done) final = { sha256: ack.sha256, method: ack.digestMethod, algorithm: ack.digestAlgorithm || 'sha256', committed: offset };
    }
  } catch (error) {
    callError ??= error;
  } finally {
    finished = true;
    changed.wake();
    options.signal?.removeEventListener('abort', onAbort);
  }
  over.abort();
  await sender.catch(() => undefined);
  budget.release(held);
  held = 0;
  if (callError !== undefined && !final) throw callError;
  if (!final)
    throw new DeployStreamError(`node ${options.nodeUuid}: the agent ended the stream without a final digest`, {
      node: options.nodeUuid,
      committedOffset: progress.committedOffset,
    });
  if (final.algorithm !== options.expected.algorithm || final.sha256 !== options.expected.hex) {
    throw new DeployChecksumError(options.nodeUuid, options.expected, { algorithm: final.algorithm, hex: final.sha256 });
  }
  return {
    sha256: final.sha256,
    digestMethod: final.method,
    committedOffset: final.committed,
    dataBytesSent: progress.dataBytesSent,
    frames: progress.frames,
  };
}
