/**
 * The provision verbs and instance flows, each a task (task.ts): manage
 * (verify the BMC), provide (clean, then available), inspect, deploy (on a
 * node the scheduler claimed), undeploy (power off, erase, back to the
 * pool). API handlers call these; none of them talks to a driver directly.
 */
import type { FanoutPlanner } from '../deploy/index.ts';
import type { Logger } from 'pino';
import { BmError, ConflictError, NotFoundError, ValidationError } from '../errors.ts';
import type { ImageCatalog, ImageRecord } from '../images/index.ts';
import { LookupCache, type InstanceStore, type InstanceRecord } from '../instances/index.ts';
import type { NodeStore, NodeRecord } from '../nodes/index.ts';
import type { AgentBoot } from './agent-boot.ts';
import type { BmcAccess } from './bmc-access.ts';
import type { DeployCheckpoints } from './deploy-checkpoint.ts';
import type { DeployStartQueue } from './deploy-starts.ts';
import { cleanSteps, type EraseMode } from './flows/clean.ts';
import { type DeployDeps, deployFailed, deployWork, type DeployEntry } from './flows/deploy.ts';
import { inspectSteps } from './flows/inspect.ts';
import { NodeLockedError } from './reservation.ts';
import type { TaskContext, TaskManager } from './task.ts';

export interface ProvisionerDeps {
  readonly store: NodeStore;
  readonly tasks: TaskManager;
  readonly bmc: BmcAccess;
  readonly boot: AgentBoot;
  readonly images: ImageCatalog;
  readonly instances: InstanceStore;
  readonly checkpoints: DeployCheckpoints;
  readonly eraseMode: EraseMode;
  /** Plans rack fan-out for concurrent deploys of one image; absent: every deploy streams from the controller. */
  readonly fanout?: FanoutPlanner;
  /** Bounds the deploys this controller starts at once (deploy-starts.ts); absent: each starts right after its claim. */
  readonly deployStarts?: DeployStartQueue;
  readonly groups: readonly string[];
  readonly log: Logger;
}

export const PROVISION_VERBS = ['manage', 'provide', 'inspect'] as const;

/** Where a task interrupted by a controller's death ends, and what the operator does next. */
const INTERRUPTED: Readonly<Record<string, string>> = {
  verifying: 'manage it again',
  inspecting: 'inspect it again',
  'inspect-wait': 'inspect it again',
  deploying: 'delete the instance and boot again',
  'wait-callback': 'delete the instance and boot again',
  cleaning: 'provide it again',
  deleting: 'provide it again',
};

/** Interrupted nodes one recovery sweep works on at once. */
const RECOVERY_CONCURRENCY = 8;

export class Provisioner {
  readonly #d: ProvisionerDeps;
  /** Nodes the recovery sweep is working on now: a forwarded deploy of the same node leaves them to it (and the other way round). */
  readonly #recovering = new Set<string>();
  /** Images deploys start from, for a second: a boot storm's deploys all read the same one (a deleted image is seen within it). */
  readonly #images = new LookupCache<ImageRecord>(1000, (image) => image.status === 'active');

  constructor(deps: ProvisionerDeps) {
    this.#d = deps;
  }

  async provision(id: string, verb: string): Promise<NodeRecord> {
    if (!(PROVISION_VERBS as readonly string[]).includes(verb))
      throw new ValidationError('verb', `must be one of ${PROVISION_VERBS.join(', ')}`);
    if (id.length === 0 || id.length > 255) throw new ValidationError('id', 'must be a node uuid or name');
    if (verb === 'manage') return this.#d.tasks.start(id, 'manage', (ctx) => this.#verify(ctx));
    if (verb === 'provide') return this.#d.tasks.start(id, 'provide', (ctx) => this.#clean(ctx), { lastError: null });
    return this.#d.tasks.start(id, 'inspect', (ctx) => this.#inspect(ctx), { lastError: null });
  }

  async #verify(ctx: TaskContext): Promise<void> {
    let state: string;
    try {
      state = await this.#d.bmc.with(ctx.node(), (c) => c.getPowerState(), 'verify (power status)');
    } catch (err) {
      throw new BmError('unavailable', `verification failed: ${err instanceof Error ? err.message : String(err)}`, {
        node: ctx.node().uuid,
      });
    }
    if (state !== ctx.node().powerState) await ctx.record({ powerState: state });
    await ctx.advance('done', { lastError: null });
  }

  /** Cleaning, from provide or after an undeploy; a failure also puts the node in maintenance (the state table says so). */
  async #clean(ctx: TaskContext): Promise<void> {
    try {
      await cleanSteps(this.#d.boot, ctx, this.#d.eraseMode);
    } catch (err) {
      await ctx
        .record({ maintenance: true, maintenanceReason: `cleaning failed: ${err instanceof Error ? err.message : String(err)}` })
        .catch(() => undefined);
      throw err;
    }
    await ctx.advance('done', { lastError: null });
  }

  async #inspect(ctx: TaskContext): Promise<void> {
    await inspectSteps(this.#d.boot, this.#d.store, ctx);
    await ctx.advance('done', { lastError: null });
  }

  #deployDeps(): DeployDeps {
    return {
      boot: this.#d.boot,
      images: this.#d.images,
      instances: this.#d.instances,
      checkpoints: this.#d.checkpoints,
      log: this.#d.log,
      ...(this.#d.fanout ? { fanout: this.#d.fanout } : {}),
      ...(this.#d.deployStarts ? { starts: this.#d.deployStarts } : {}),
      imageOf: (uuid) => this.#images.get(uuid, (id) => this.#d.images.get(id)),
    };
  }

  /** Starts the deploy on a node the scheduler claimed for the instance (it holds the reservation). */
  deploy(node: NodeRecord, instance: InstanceRecord): void {
    const deps = this.#deployDeps();
    this.#d.tasks.adopt(node, deployWork(deps, instance), deployFailed(deps, instance));
  }

  /**
   * Starts the deploy of a node another controller claimed for this one (the hash ring's owner runs every deploy of
   * its nodes; the claim made it the holder). Already running here (the recovery sweep found it first): nothing to do.
   */
  startClaimed(node: NodeRecord, instance: InstanceRecord): void {
    if (this.#d.tasks.busy(node.uuid) || this.#recovering.has(node.uuid)) return;
    if (
      node.reservation !== this.#d.tasks.controllerId ||
      node.provisionState !== 'deploying' ||
      node.instanceUuid !== instance.uuid ||
      instance.state !== 'BUILD'
    )
      throw new ConflictError(
        `node ${node.uuid} is no longer claimed for instance ${instance.uuid} by controller ${this.#d.tasks.controllerId} (now ${node.provisionState}, reserved by ${node.reservation ?? 'nobody'}); deploy not started`,
        { node: node.uuid, instance: instance.uuid },
      );
    this.deploy(node, instance);
  }

  /** Tears the instance down: a running deploy is cancelled first; the node powers off, erases its disk and returns to the pool. */
  async undeploy(instance: InstanceRecord): Promise<void> {
    if (!instance.nodeUuid) {
      await this.#d.instances.remove(instance.uuid);
      return;
    }
    let node = await this.#d.store.findNode(instance.nodeUuid);
    if (!node || node.instanceUuid !== instance.uuid) {
      // The node was freed already (an earlier delete reached cleaning): only the row is left.
      await this.#d.instances.remove(instance.uuid);
      return;
    }
    if (node.provisionState === 'deploying' || node.provisionState === 'wait-callback') {
      if (!(await this.#d.tasks.cancel(node.uuid, `instance ${instance.uuid} was deleted while building`))) {
        throw new BmError(
          'failed-precondition',
          `instance ${instance.uuid} is building on controller ${node.reservation ?? 'unknown'}; delete it again once its node is deploy-failed or active`,
          { instance: instance.uuid, node: node.uuid },
        );
      }
      node = (await this.#d.store.findNode(node.uuid)) ?? node;
    }
    await this.#d.instances.update(instance.uuid, { state: 'DELETING' });
    const deleteFailed = async (reason: string): Promise<void> =>
      this.#d.instances.update(instance.uuid, { state: 'ERROR', lastError: `delete failed: ${reason}` });
    try {
      await this.#d.tasks.start(
        node.uuid,
        'undeploy',
        async (ctx) => {
          await this.#d.boot.powerOff(ctx);
          // The tenant's machine is gone once it is off; erasing is the fleet's business.
          await ctx.advance('done', { instanceUuid: null, targetProvisionState: null });
          await this.#d.instances.remove(instance.uuid);
          ctx.publish('instance.deleted', { instance: instance.uuid });
          await this.#clean(ctx);
        },
        {},
        deleteFailed,
      );
    } catch (err) {
      // Locked by another task: nothing moved, so the instance stays as it was and the caller retries (as after an Ironic 409).
      if (err instanceof NodeLockedError) await this.#d.instances.update(instance.uuid, { state: instance.state });
      else await deleteFailed(err instanceof Error ? err.message : String(err));
      throw err;
    }
  }

  /**
   * A task that was running when a controller stopped or died left its node in a transient state.
   * At start, and then periodically: reservations under this controller's id that no task of ours
   * holds are released, those of controllers whose heartbeat lapsed are broken, and such nodes end
   * in their failed state with a way back in last_error. (Resuming them instead is the takeover's job.)
   */
  async recover(
    controllerId: string,
    breakDead: (nodeUuid: string) => Promise<boolean>,
    owns: (node: NodeRecord) => Promise<boolean> = async () => true,
  ): Promise<number> {
    let recovered = 0;
    for (const [state, wayBack] of Object.entries(INTERRUPTED)) {
      let marker: string | null = null;
      do {
        const page = await this.#d.store.listNodes({ provisionState: state }, 500, marker);
        // A dead peer's nodes are taken over a few at a time: one by one, the last of twenty deploys
        // resumed 7.7 s after the first (a handful of queries each, on a loaded host).
        const queue = [...page.items];
        const worker = async (): Promise<void> => {
          for (let node = queue.shift(); node; node = queue.shift()) {
            if (!this.#d.groups.includes(node.group) || this.#d.tasks.busy(node.uuid) || this.#recovering.has(node.uuid)) continue;
            this.#recovering.add(node.uuid);
            try {
              if (await this.#recoverNode(node, state, wayBack, controllerId, breakDead, owns)) recovered++;
            } finally {
              this.#recovering.delete(node.uuid);
            }
          }
        };
        await Promise.all(Array.from({ length: Math.min(RECOVERY_CONCURRENCY, queue.length) }, worker));
        marker = page.nextMarker;
      } while (marker);
    }
    return recovered;
  }

  async #recoverNode(
    node: NodeRecord,
    state: string,
    wayBack: string,
    controllerId: string,
    breakDead: (nodeUuid: string) => Promise<boolean>,
    owns: (node: NodeRecord) => Promise<boolean>,
  ): Promise<boolean> {
    // Of the group's live controllers, the hash ring's owner of the node picks it up.
    if (node.reservation !== controllerId && !(await owns(node))) return false;
    if (node.reservation === controllerId) await this.#d.store.release(node.uuid, controllerId);
    else if (node.reservation !== null && !(await breakDead(node.uuid))) return false;
    if (await this.#resumeDeploy(node)) return true;
    try {
      await this.#d.tasks.start(node.uuid, 'fail', async () => undefined, {
        lastError: `interrupted: its controller (${node.reservation ?? 'none'}) stopped while the node was ${state}; ${wayBack}`,
      });
      if (node.instanceUuid)
        await this.#d.instances.update(node.instanceUuid, { state: 'ERROR', lastError: `interrupted while ${state}; ${wayBack}` });
      return true;
    } catch (err) {
      this.#d.log.warn({ err, node: node.uuid }, 'could not recover an interrupted node');
      return false;
    }
  }

  /**
   * A deploy whose controller went away continues here instead of failing: streaming to the agent it
   * left (from the node's checkpoint), waiting for the agent of the boot it started, or from the top.
   */
  async #resumeDeploy(node: NodeRecord): Promise<boolean> {
    if ((node.provisionState !== 'deploying' && node.provisionState !== 'wait-callback') || !node.instanceUuid) return false;
    const instance = await this.#d.instances.find(node.instanceUuid, null);
    if (!instance || instance.state !== 'BUILD') return false;
    const entry: DeployEntry =
      node.provisionState === 'wait-callback'
        ? 'wait'
        : (await this.#d.boot.hasAgent(node))
          ? 'stream'
          : (await this.#d.boot.armed(node.uuid))
            ? 'wait'
            : 'start';
    const deps = this.#deployDeps();
    try {
      await this.#d.tasks.takeOver(node.uuid, deployWork(deps, instance, entry), deployFailed(deps, instance));
    } catch (err) {
      this.#d.log.warn({ err, node: node.uuid }, 'could not take over a deploy');
      return false;
    }
    this.#d.log.warn(
      { node: node.uuid, instance: instance.uuid, state: node.provisionState, entry, from: node.reservation },
      'took over a deploy left by a stopped controller',
    );
    return true;
  }

  /** An instance's node, for power verbs. */
  async nodeOf(instance: InstanceRecord): Promise<NodeRecord> {
    if (!instance.nodeUuid)
      throw new BmError('failed-precondition', `instance ${instance.uuid} has no node yet`, { instance: instance.uuid });
    const node = await this.#d.store.findNode(instance.nodeUuid);
    if (!node) throw new NotFoundError('node', instance.nodeUuid);
    return node;
  }
}
