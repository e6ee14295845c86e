/**
 * The deploy flow, run as a task on a claimed node (already `deploying` and
 * reserved by the scheduler's claim): PXE-boot the ramdisk, wait for the
 * agent, stream the image from the node's checkpoint, write the config drive,
 * boot from disk. Progress goes to the instance row and to NATS; a failure
 * leaves the node in deploy-failed and the instance in ERROR with the reason.
 */
import type { Logger } from 'pino';
import type { DeployCheckpoints } from '../deploy-checkpoint.ts';
import {
  deployImage,
  type DeployImageOptions,
  expectedDigestOf,
  deployImageFanout,
  fanoutImageKey,
  type FanoutPlanner,
} from '../../deploy/index.ts';
import { type ImageCatalog, type ImageRecord, openImageSource } from '../../images/index.ts';
import { metaDataJson, networkDataJson, type InstanceStore, type InstanceRecord } from '../../instances/index.ts';
import type { AgentBoot, AgentSession } from '../agent-boot.ts';
import type { DeployStartQueue } from '../deploy-starts.ts';
import type { AfterFailure, TaskContext, TaskWork } from '../task.ts';

export interface DeployDeps {
  readonly boot: AgentBoot;
  readonly images: ImageCatalog;
  readonly instances: InstanceStore;
  readonly checkpoints: DeployCheckpoints;
  readonly log: Logger;
  /** Rack fan-out for concurrent deploys of one image (controller/deploy/fanout-planner.ts); absent: off. */
  readonly fanout?: FanoutPlanner;
  /** The image a deploy starts from, by uuid (a storm's deploys share a cached read); absent: read from `images`. */
  readonly imageOf?: (uuid: string) => Promise<ImageRecord>;
  /** Bounds the deploys starting at once (token, bootdev, power-on); absent: each starts at once. */
  readonly starts?: DeployStartQueue;
}

/**
 * How long a deploy that relays the image to others waits for them before
 * its node reboots out of the ramdisk (a follower still streaming then falls
 * back to the controller, so this bounds a wait, not correctness).
 */
const FOLLOWERS_TIMEOUT_MS = 120_000;

/** Progress lands in the instance row at most this often (every event still goes to NATS). */
const PROGRESS_STEP = 5;

function hostOf(address: string): string {
  const m = /^\[([^\]]+)\]:\d+$/.exec(address) ?? /^([^:]+):\d+$/.exec(address);
  return m?.[1] ?? address;
}

/** Where a deploy (re)starts: from the top, waiting for an agent already booted, or streaming to a live agent. */
export type DeployEntry = 'start' | 'wait' | 'stream';

export function deployWork(deps: DeployDeps, instance: InstanceRecord, entry: DeployEntry = 'start'): TaskWork {
  return (ctx: TaskContext) => runDeploy(deps, instance, ctx, entry);
}

/** Run once the node is deploy-failed, so whoever sees the instance in ERROR finds its node failed too. */
export function deployFailed(deps: DeployDeps, instance: InstanceRecord): AfterFailure {
  return (reason) => deps.instances.update(instance.uuid, { state: 'ERROR', lastError: reason });
}

async function runDeploy(deps: DeployDeps, instance: InstanceRecord, ctx: TaskContext, entry: DeployEntry): Promise<void> {
  const image = await (deps.imageOf ?? ((uuid: string) => deps.images.get(uuid)))(instance.imageUuid);
  let agent: AgentSession;
  if (entry === 'start') {
    const powerOn = () => deps.boot.bootRamdisk(ctx, 'deploy', 'wait');
    const since = await (deps.starts ? deps.starts.run(ctx.signal, powerOn) : powerOn());
    agent = await deps.boot.waitForAgent(ctx, since);
  } else if (entry === 'wait') {
    // Taken over while the machine boots: its armed token is in the row, its agent calls back to any controller.
    agent = await deps.boot.waitForAgent(ctx, new Date(0));
  } else {
    agent = await deps.boot.liveAgent(ctx);
  }
  // One connection to the agent for everything below: every stream attempt and the config drive.
  try {
    await writeToAgent(deps, instance, ctx, entry, agent, image);
  } finally {
    deps.boot.closeAgent(agent);
  }
  await deps.boot.bootFromDisk(ctx);
  const address = instance.network.mode === 'static' ? (instance.network.address ?? null) : hostOf(agent.address);
  await ctx.advance('done', { targetProvisionState: null, lastError: null });
  await deps.instances.update(instance.uuid, { state: 'ACTIVE', progress: 100, lastError: null, address });
  ctx.publish('instance.active', { instance: instance.uuid });
}

/** The image, then the config drive, written by the agent over the session's one connection. */
async function writeToAgent(
  deps: DeployDeps,
  instance: InstanceRecord,
  ctx: TaskContext,
  entry: DeployEntry,
  agent: AgentSession,
  image: ImageRecord,
): Promise<void> {
  if (ctx.node().provisionState === 'wait-callback') await ctx.advance('resume', {}, `agent at ${agent.address} called back`);
  const node = ctx.node();

  // The image write: from the node's checkpoint (a broken stream or an earlier controller's progress).
  const opened = await openImageSource(
    await deps.images.blobs.openRandomAccess(image.sha256),
    image.diskFormat === 'qcow2' ? 'qcow2' : 'raw',
  );
  let shown = -PROGRESS_STEP;
  try {
    const resumeOffset = await deps.checkpoints.begin(node.uuid, image.rawSha256);
    if (resumeOffset > 0) ctx.publish('deploy.resumed', { instance: instance.uuid, from: String(resumeOffset), entry });
    const expected = expectedDigestOf(image);
    const options: DeployImageOptions = {
      nodeUuid: node.uuid,
      agentAddress: agent.address,
      agentToken: agent.token,
      link: agent.link,
      source: opened.source,
      expected,
      resumeOffset,
      signal: ctx.signal,
      checkpoint: async (offset) => {
        // A fenced controller records nothing more; the next owner resumes from the last checkpoint that landed.
        ctx.checkFence();
        await deps.checkpoints.record(node.uuid, image.rawSha256, offset, ctx.owner);
        const percent = image.virtualSize > 0 ? Math.min(99, Math.floor((offset / image.virtualSize) * 100)) : 99;
        ctx.publish('deploy.progress', {
          instance: instance.uuid,
          percent: String(percent),
          committed: String(offset),
          total: String(image.virtualSize),
        });
        if (percent >= shown + PROGRESS_STEP) {
          shown = percent;
          await deps.instances.update(instance.uuid, { progress: percent });
        }
      },
      onRetry: (attempt, offset, error) =>
        deps.log.warn({ node: node.uuid, attempt, offset, err: error }, 'image stream broke; resuming from the checkpoint'),
    };
    // Relays and followers must reach each other: fan-out stays within the node's group (its L2 segment).
    const relayed = deps.fanout
      ? await deployImageFanout({
          ...options,
          planner: deps.fanout,
          imageKey: `${fanoutImageKey(expected, image.virtualSize)}@${node.group}`,
          followersTimeoutMs: FOLLOWERS_TIMEOUT_MS,
          onFallback: (relay, offset, error) =>
            deps.log.warn(
              { node: node.uuid, relay: relay.nodeUuid, offset, err: error },
              'relayed image stream failed; the controller streams the rest',
            ),
        })
      : undefined;
    const result = relayed ?? (await deployImage(options));
    ctx.checkFence();
    await deps.checkpoints.clear(node.uuid);
    ctx.publish('deploy.written', {
      instance: instance.uuid,
      sha256: result.sha256,
      digest: result.digestMethod,
      attempts: String(result.attempts),
      // Which node's agent relayed the image to this one, if any (rack fan-out).
      ...(relayed?.relayedBy ? { relay: relayed.relayedBy, relayFellBack: String(relayed.fellBack) } : {}),
    });
  } finally {
    await opened.close();
  }

  // cloud-init's config drive, after the image so the drive never overlaps it.
  const cloudNode = { uuid: node.uuid, group: node.group, macs: node.macs };
  ctx.checkFence();
  await deps.boot.withAgent(agent, (a) =>
    a.client.writeConfigDrive({
      metaDataJson: metaDataJson(instance, cloudNode),
      userData: instance.userData ?? new Uint8Array(),
      networkDataJson: networkDataJson(instance, cloudNode),
      imageSize: BigInt(image.virtualSize),
    }),
  );
}
