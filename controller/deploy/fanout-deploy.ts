/**
 * A deploy that takes its place in the fan-out plan (fanout-planner.ts): fed
 * by a relay when the plan gives it one, by the controller otherwise. When
 * the relayed stream fails for any reason (the relay died, its own image
 * stalled, the follower's digest came out wrong), the deploy falls back to
 * the controller's own stream (deploy.ts, with its retries) from the
 * follower's checkpoint; after a wrong digest, from the start. Either way the
 * agent verifies its own digest and the controller compares it with the
 * image's.
 *
 * Streams in a fan-out commit every FANOUT_COMMIT_INTERVAL_BYTES rather than
 * the default 64 MiB: a relay forwards only what it has committed, so the
 * interval is the lag each hop adds. The caller's checkpoint (a MySQL write
 * and a progress event per call in the deploy flow) still runs about every
 * default interval: a fall-back resumes from the stream's own, finer,
 * committed offset; the stored checkpoint is for a controller taking over.
 */
import { connectAgent, type AgentConnection } from './agent-client.ts';
import { deployImage, type DeployImageOptions, type DeployImageResult } from './deploy.ts';
import { DeployChecksumError } from './errors.ts';
import type { FanoutPlanner, RelayEndpoint } from './fanout-planner.ts';
import { relayImage } from './relay-stream.ts';
import type { StreamProgress } from './stream.ts';
import { DEFAULT_TUNING, type StreamTuning } from './tuning.ts';

const MIB = 1024 * 1024;

/**
 * The commit interval of fan-out streams. Each hop of the tree lags its
 * upstream by about one interval; at 8 MiB a 4-hop tree lags by 32 MiB, a
 * fraction of a second at disk speed, and an fdatasync per 8 MiB cost
 * nothing measurable on the bench machine's files.
 */
export const FANOUT_COMMIT_INTERVAL_BYTES = 8 * MIB;

/** DEFAULT_TUNING with the fan-out commit interval (and the uncommitted window it allows). */
export const FANOUT_TUNING: StreamTuning = {
  ...DEFAULT_TUNING,
  commitIntervalBytes: FANOUT_COMMIT_INTERVAL_BYTES,
  maxUncommittedBytes: 4 * FANOUT_COMMIT_INTERVAL_BYTES,
};

export interface FanoutDeployOptions extends DeployImageOptions {
  readonly planner: FanoutPlanner;
  /** fanoutImageKey(expected, virtualSize): deploys with the same key may feed each other. */
  readonly imageKey: string;
  /** Told when a relayed stream fails and the controller takes over. */
  readonly onFallback?: (relay: RelayEndpoint, committedOffset: number, error: unknown) => void;
  /** Call `checkpoint` once the committed offset has moved this far (default 64 MiB; 0: at every commit). */
  readonly checkpointStepBytes?: number;
  /** How long a finished deploy waits for its followers before it returns (default 0: not at all). */
  readonly followersTimeoutMs?: number;
}

export interface FanoutDeployResult extends DeployImageResult {
  /** The relay this deploy was planned behind, if any (it may have fallen back since). */
  readonly relayedBy?: string;
  /** The relay failed it and the controller finished the stream. */
  readonly fellBack: boolean;
  /** Offset the relayed stream had committed when it ended (the image size when it finished). */
  readonly relayedCommittedOffset: number;
}

/** Passes on a committed offset once it is `step` past the last one passed on, and the image end. */
function coarseCheckpoint(
  checkpoint: (offset: number) => Promise<void>,
  from: number,
  step: number,
  end: number,
): (offset: number) => Promise<void> {
  let passed = from;
  return async (offset) => {
    if (offset - passed < step && offset < end) return;
    passed = offset;
    await checkpoint(offset);
  };
}

export async function deployImageFanout(options: FanoutDeployOptions): Promise<FanoutDeployResult> {
  const tuning = options.tuning ?? FANOUT_TUNING;
  const checkpoint = coarseCheckpoint(
    options.checkpoint,
    options.resumeOffset ?? 0,
    options.checkpointStepBytes ?? DEFAULT_TUNING.commitIntervalBytes,
    options.source.virtualSize,
  );
  const lease = options.planner.join({
    nodeUuid: options.nodeUuid,
    imageKey: options.imageKey,
    agentAddress: options.agentAddress,
    agentToken: options.agentToken,
  });
  const open = options.connect ?? connectAgent;
  let resumeOffset = options.resumeOffset ?? 0;
  const relay = lease.upstream;
  try {
    if (relay) {
      const progress: StreamProgress = { committedOffset: resumeOffset, dataBytesSent: 0, frames: 0 };
      const connection: AgentConnection = open(relay.address, relay.token, tuning);
      try {
        const result = await relayImage(
          connection,
          {
            nodeUuid: options.nodeUuid,
            followerAddress: options.agentAddress,
            followerToken: options.agentToken,
            imageId: options.imageKey,
            imageSize: options.source.virtualSize,
            resumeOffset,
            commitIntervalBytes: tuning.commitIntervalBytes,
            checkpoint,
            expected: options.expected,
            ...(options.signal ? { signal: options.signal } : {}),
          },
          progress,
        );
        lease.leave();
        await lease.followersDone(options.followersTimeoutMs ?? 0);
        return {
          sha256: result.sha256,
          digestMethod: result.digestMethod,
          attempts: 1,
          startOffsets: [resumeOffset],
          dataBytesSent: 0,
          relayedBy: relay.nodeUuid,
          fellBack: false,
          relayedCommittedOffset: result.committedOffset,
        };
      } catch (error) {
        if (options.signal?.aborted) throw error;
        lease.fellBack();
        // A wrong digest says nothing about which bytes were wrong: write them all again.
        resumeOffset = error instanceof DeployChecksumError ? 0 : progress.committedOffset;
        options.onFallback?.(relay, progress.committedOffset, error);
        const direct = await deployImage({ ...options, checkpoint, tuning, resumeOffset, imageId: options.imageKey });
        lease.leave();
        await lease.followersDone(options.followersTimeoutMs ?? 0);
        return {
          ...direct,
          startOffsets: [options.resumeOffset ?? 0, ...direct.startOffsets],
          attempts: direct.attempts + 1,
          relayedBy: relay.nodeUuid,
          fellBack: true,
          relayedCommittedOffset: progress.committedOffset,
        };
      } finally {
        connection.close();
      }
    }
    const direct = await deployImage({ ...options, checkpoint, tuning, resumeOffset, imageId: options.imageKey });
    lease.leave();
    await lease.followersDone(options.followersTimeoutMs ?? 0);
    return { ...direct, fellBack: false, relayedCommittedOffset: 0 };
  } finally {
    lease.leave();
  }
}
