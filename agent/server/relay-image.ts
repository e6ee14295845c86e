/**
 * RelayImage: the controller asks this agent, which is writing image X (or
 * has written it), to forward X to a follower agent, so that the controller
 * streams an image once for many nodes (controller/deploy/fanout-planner.ts
 * plans who follows whom). The relay calls the follower's WriteImage with the
 * follower's own per-deploy token, which the controller hands over on this
 * (authenticated) call, and sends only what it has committed, read back from
 * its target (relay-sender.ts); the follower verifies its own digest and its
 * acknowledgements come back here, to the controller, which checkpoints them
 * as it does its own streams'. Relays only read: several run at once, beside
 * the image's own WriteImage, and none holds the disk.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { RelayImageRequest, WriteImageAckSchema } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import type { CallContext } from '../../proto/rpc/index.ts';
import { AgentError } from '../errors.ts';
import { openTarget } from '../disk/index.ts';
import type { AgentContext } from './context.ts';
import { safeNumber } from './convert.ts';
import { RELAY_STALL_MS, relayToFollower } from './relay-sender.ts';

type Ack = MessageInitShape<typeof WriteImageAckSchema>;

/**
 * How long a relay request waits for this agent's own stream of the image to
 * begin. In a deep tree under load that stream is itself waiting for its
 * relay's (measured: a 20-deep chain on the loaded 2-core machine passed
 * 10 s), so as long as a stalled stream may last.
 */
const RELAY_FEED_WAIT_MS = RELAY_STALL_MS;

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

export function relayImageHandler(ctx: AgentContext): (request: RelayImageRequest, call: CallContext) => AsyncIterable<Ack> {
  return async function* relayImage(request, call) {
    const start = request.start;
    if (!start) throw new AgentError('invalid-argument', 'a relay request must carry the follower stream start');
    if (!HOST_PORT.test(request.followerAddress))
      throw new AgentError('invalid-argument', `follower address "${request.followerAddress.slice(0, 64)}" is not host:port`);
    if (request.followerToken === '') throw new AgentError('invalid-argument', 'a relay request must carry the follower token');
    const imageSize = safeNumber('image_size', start.imageSize);
    const resumeOffset = safeNumber('resume_offset', start.resumeOffset);
    const feed = start.imageId === '' ? undefined : await ctx.feedOf(start.imageId, imageSize, call.signal, RELAY_FEED_WAIT_MS);
    if (!feed) {
      throw new AgentError('failed-precondition', `this agent is not writing image "${start.imageId.slice(0, 80)}" of ${imageSize} bytes`, {
        imageId: start.imageId.slice(0, 80),
        imageSize,
      });
    }
    if (resumeOffset > imageSize)
      throw new AgentError('out-of-range', `resume offset ${resumeOffset} lies past the image end ${imageSize}`, {
        resumeOffset,
        imageSize,
      });
    const target = await openTarget(feed.path, { sysRoot: ctx.config.root });
    ctx.config.log('relay started', { follower: request.followerAddress, imageId: feed.imageId, resumeOffset });
    let last = resumeOffset;
    try {
      for await (const ack of relayToFollower(
        feed,
        target.handle,
        { address: request.followerAddress, token: request.followerToken },
        start,
        call.signal,
      )) {
        last = Number(ack.committedOffset ?? 0n);
        yield ack;
      }
      ctx.config.log('relay finished', { follower: request.followerAddress, committedOffset: last });
    } catch (error) {
      ctx.config.log('relay stopped', {
        follower: request.followerAddress,
        committedOffset: last,
        error: error instanceof Error ? error.message : String(error),
      });
      throw error;
    } finally {
      await target.handle.close();
    }
  };
}
