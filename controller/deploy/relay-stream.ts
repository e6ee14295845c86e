/**
 * A follower's image stream through a relay: the controller asks the relay
 * agent (RelayImage, on the relay's own token) to stream the image to the
 * follower with the follower's token, and reads back the follower's
 * acknowledgements through the relay. Each one is checkpointed exactly as a
 * direct stream's (stream.ts), so when the relay dies the controller resumes
 * the follower from its own committed offset; the follower's final digest is
 * checked against the image's as for any deploy.
 */
import type { AgentConnection } from './agent-client.ts';
import type { ExpectedDigest } from './digest.ts';
import { DeployChecksumError, DeployStreamError } from './errors.ts';
import type { StreamProgress, StreamResult } from './stream.ts';

export interface RelayedStreamOptions {
  readonly nodeUuid: string;
  /** The follower's agent: where the relay sends, and the token it sends with. */
  readonly followerAddress: string;
  readonly followerToken: string;
  /** The image's id, the relay's check that it forwards the image it writes. */
  readonly imageId: string;
  readonly imageSize: number;
  readonly resumeOffset: number;
  readonly commitIntervalBytes: number;
  readonly checkpoint: (committedOffset: number) => Promise<void>;
  readonly expected: ExpectedDigest;
  readonly signal?: AbortSignal;
}

/** Streams the image to the follower through `relay`; `progress` tells where to resume after a failure. */
export async function relayImage(
  relay: AgentConnection,
  options: RelayedStreamOptions,
  progress: StreamProgress = { committedOffset: options.resumeOffset, dataBytesSent: 0, frames: 0 },
): Promise<StreamResult> {
  progress.committedOffset = options.resumeOffset;
  const acks = relay.client.relayImage(
    {
      followerAddress: options.followerAddress,
      followerToken: options.followerToken,
      start: {
        imageSize: BigInt(options.imageSize),
        resumeOffset: BigInt(options.resumeOffset),
        commitIntervalBytes: BigInt(options.commitIntervalBytes),
        digestAlgorithm: options.expected.algorithm,
        imageId: options.imageId,
      },
    },
    options.signal ? { signal: options.signal } : {},
  );
  let final: { sha256: string; method: string; algorithm: string; committed: number } | undefined;
  for await (const ack of acks) {
    const offset = Number(ack.committedOffset);
    if (offset > progress.committedOffset) {
      progress.committedOffset = offset;
      await options.checkpoint(offset);
    }
    if (ack.done) final = { sha256: ack.sha256, method: ack.digestMethod, algorithm: ack.digestAlgorithm || 'sha256', committed: offset };
  }
  if (!final)
    throw new DeployStreamError(`node ${options.nodeUuid}: the relay ended the stream without the follower's digest`, {
      node: options.nodeUuid,
      relay: relay.address,
      committedOffset: progress.committedOffset,
    });
  if (final.algorithm !== options.expected.algorithm || final.sha256 !== options.expected.hex)
    throw new DeployChecksumError(options.nodeUuid, options.expected, { algorithm: final.algorithm, hex: final.sha256 });
  return { sha256: final.sha256, digestMethod: final.method, committedOffset: final.committed, dataBytesSent: 0, frames: 0 };
}
