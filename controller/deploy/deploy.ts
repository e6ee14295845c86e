/**
 * The deploy step's image write: stream the image to the agent, and when the
 * stream breaks (the agent restarted, the network dropped), reconnect and
 * resume from the last checkpointed offset, within a retry budget. A
 * checksum mismatch or a refusal by the agent (bad token, disk too small) is
 * final: retrying would not change it.
 */
import { status } from '@grpc/grpc-js';
import { isServiceError } from '../../proto/rpc/index.ts';
import type { ImageSource } from '../images/index.ts';
import { AgentLink, type AgentConnector } from './agent-link.ts';
import type { ExpectedDigest } from './digest.ts';
import { DeployChecksumError, DeployStreamError } from './errors.ts';
import { streamImage, type StreamProgress } from './stream.ts';
import type { BufferBudget } from './buffer-budget.ts';
import { DEFAULT_TUNING, type StreamTuning } from './tuning.ts';

export interface DeployImageOptions {
  readonly nodeUuid: string;
  /** host:port of the agent's gRPC server (from its heartbeat). */
  readonly agentAddress: string;
  readonly agentToken: string;
  readonly source: ImageSource;
  /** The digest the written image must have (expectedDigestOf(image)). */
  readonly expected: ExpectedDigest;
  /** The image's id, sent in the stream's start so the agent may relay the image to others (fanout-deploy.ts). */
  readonly imageId?: string;
  /** The checkpointed offset to start from: 0, or what an earlier attempt or controller committed. */
  readonly resumeOffset?: number;
  readonly checkpoint: (committedOffset: number) => Promise<void>;
  readonly tuning?: StreamTuning;
  /** The controller-wide buffer budget (buffer-budget.ts); the process-wide one by default. */
  readonly budget?: BufferBudget;
  /** Streams to try in all (first included); default 5. */
  readonly attempts?: number;
  /** Wait before reconnecting, doubled each time; default 1 s. */
  readonly retryDelayMs?: number;
  readonly signal?: AbortSignal;
  /** Told about each broken stream before the retry. */
  readonly onRetry?: (attempt: number, committedOffset: number, error: unknown) => void;
  /**
   * The operation's connection to this agent (agent-link.ts), shared with its other calls; the
   * deploy leaves it open. Absent: the deploy dials its own and closes it at the end.
   */
  readonly link?: AgentLink;
  /** How the deploy's own link dials (without `link`); default connectAgent. Overridable for tests. */
  readonly connect?: AgentConnector;
}

export interface DeployImageResult {
  readonly sha256: string;
  readonly digestMethod: string;
  readonly attempts: number;
  /** Offsets each attempt started from. */
  readonly startOffsets: readonly number[];
  /** Data bytes sent over all attempts; minus the image's data bytes, what resumes sent again. */
  readonly dataBytesSent: number;
}

/** Errors that say the agent refused the stream, not that the stream broke. */
const FINAL_CODES: ReadonlySet<number> = new Set([
  status.UNAUTHENTICATED,
  status.PERMISSION_DENIED,
  status.INVALID_ARGUMENT,
  status.FAILED_PRECONDITION,
  status.OUT_OF_RANGE,
  status.NOT_FOUND,
  status.UNIMPLEMENTED,
]);

function retryable(error: unknown): boolean {
  if (error instanceof DeployChecksumError) return false;
  if (isServiceError(error)) return !FINAL_CODES.has(error.code);
  return error instanceof DeployStreamError;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });

export async function deployImage(options: DeployImageOptions): Promise<DeployImageResult> {
  const tuning = options.tuning ?? DEFAULT_TUNING;
  const attempts = options.attempts ?? 5;
  const link = options.link ?? new AgentLink(options.agentAddress, options.agentToken, tuning, options.connect);
  try {
    if (link.tuning.chunkBytes < tuning.chunkBytes)
      throw new RangeError(
        `node ${options.nodeUuid}: the agent's connection takes frames of ${link.tuning.chunkBytes} bytes, the stream sends ${tuning.chunkBytes}`,
      );
    return await streamWithRetries(options, link, tuning, attempts);
  } finally {
    if (!options.link) link.close();
  }
}

async function streamWithRetries(
  options: DeployImageOptions,
  link: AgentLink,
  tuning: StreamTuning,
  attempts: number,
): Promise<DeployImageResult> {
  let resumeOffset = options.resumeOffset ?? 0;
  let delay = options.retryDelayMs ?? 1000;
  let dataBytesSent = 0;
  const startOffsets: number[] = [];
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted();
    startOffsets.push(resumeOffset);
    const progress: StreamProgress = { committedOffset: resumeOffset, dataBytesSent: 0, frames: 0 };
    try {
      const result = await streamImage(
        link.connection,
        options.source,
        {
          nodeUuid: options.nodeUuid,
          resumeOffset,
          checkpoint: options.checkpoint,
          expected: options.expected,
          ...(options.imageId ? { imageId: options.imageId } : {}),
          tuning,
          ...(options.signal ? { signal: options.signal } : {}),
          ...(options.budget ? { budget: options.budget } : {}),
        },
        progress,
      );
      dataBytesSent += progress.dataBytesSent;
      return { sha256: result.sha256, digestMethod: result.digestMethod, attempts: attempt, startOffsets, dataBytesSent };
    } catch (error) {
      dataBytesSent += progress.dataBytesSent;
      if (options.signal?.aborted || !retryable(error)) throw error;
      if (attempt >= attempts) {
        const reason = isServiceError(error) ? error.details : error instanceof Error ? error.message : String(error);
        throw new DeployStreamError(
          `node ${options.nodeUuid}: the image stream broke ${attempt} times; last: ${reason}`,
          { node: options.nodeUuid, committedOffset: progress.committedOffset, attempts: attempt },
          error,
        );
      }
      resumeOffset = progress.committedOffset;
      options.onRetry?.(attempt, resumeOffset, error);
      await sleep(delay, options.signal);
      delay = Math.min(delay * 2, 30_000);
      // Asked after the wait, when grpc-js has seen the connection's fate: a stream that broke on a live
      // connection (the agent ended it, a superseding stream) resumes on that connection.
      link.dropIfBroken();
    }
  }
}
