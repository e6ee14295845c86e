/**
 * Lock, transition, work: one construct (after Ironic's task manager). A task
 * takes the node's reservation, applies a transition checked against the
 * state table (written with the row version), runs its work while holding
 * the reservation, in the background when the work outlives the API call,
 * and releases it at the end, even on error. Work that throws ends the node
 * in the failed state its current state leads to, with last_error.
 *
 * Every write a task makes carries its owner epoch (nodes/owner.ts), and each
 * step first checks the fence (cluster/fence.ts): a fenced controller's task
 * stops at its next step without touching the node or its reservation, and a
 * task whose node was taken over meanwhile ends quietly on the refused write.
 * A task that ended at rest while fenced keeps its reservation only until the
 * fence opens (unreleased.ts): releaseLeftovers() lets go of it then.
 */
import type { Logger } from 'pino';
import { FencedError, type FenceView } from '../cluster/index.ts';
import { BmError, ConflictError, NotFoundError } from '../errors.ts';
import type { EventBus } from '../events/index.ts';
import { StaleOwnerError, type NodeOwner, type NodeStore, type StateFields, type NodeRecord } from '../nodes/index.ts';
import { NodeLockedError } from './reservation.ts';
import { nextState, TRANSITIONS, type ProvisionEvent } from './states.ts';
import { UnreleasedReservations } from './unreleased.ts';

export interface TaskContext {
  /** Aborted when the controller stops: work checkpoints and returns. */
  readonly signal: AbortSignal;
  /** The node as this task last wrote or read it. */
  node(): NodeRecord;
  /** Applies `event` from the node's current state (checked), with extra fields; published on NATS. */
  advance(event: ProvisionEvent, fields?: StateFields, message?: string): Promise<NodeRecord>;
  /** Observed fields (power, last_error) without a transition. */
  record(fields: StateFields): Promise<void>;
  /** Re-reads the node (e.g. to see an agent's heartbeat). */
  refresh(): Promise<NodeRecord>;
  publish(type: string, details?: Readonly<Record<string, string>>, message?: string): void;
  /** Who writes: this controller at the epoch it reserved the node at (for writes outside the node store, e.g. checkpoints). */
  readonly owner: NodeOwner;
  /** Throws FencedError while this controller is fenced: call before a write the store does not guard. */
  checkFence(): void;
}

export type TaskWork = (ctx: TaskContext) => Promise<void>;

/** Told after a failed task's node reached its failed state (an instance then shows ERROR, never before its node). */
export type AfterFailure = (reason: string) => Promise<void>;

/** Thrown by work that was stopped because the controller is stopping; the node keeps its state for the next owner. */
export class TaskInterruptedError extends BmError {
  constructor(nodeUuid: string) {
    super('unavailable', `node ${nodeUuid}: task interrupted by a controller stop; it resumes when the node is taken over`, {
      node: nodeUuid,
    });
  }
}

/** Why a cancelled task failed: the node ends in its failed state with this as last_error. */
export class TaskCancelledError extends BmError {
  constructor(nodeUuid: string, reason: string) {
    super('failed-precondition', `cancelled: ${reason}`, { node: nodeUuid });
  }
}

export interface TaskManagerOptions {
  readonly controllerId: string;
  /** How long start() waits for another task's reservation before failing with NodeLockedError (default 5 s). */
  readonly lockWaitMs?: number;
  /** Breaks a reservation whose controller is dead; true when it did (dead-reservations.ts). */
  readonly breakDead?: (nodeUuid: string) => Promise<boolean>;
  /** While fenced, no task starts and running ones stop at their next step (absent: never fenced). */
  readonly fence?: FenceView;
  /** Where reservations that could not be released while fenced wait for the fence to open (shared with power verbs). */
  readonly unreleased?: UnreleasedReservations;
}

const NEVER_FENCED: FenceView = { check: () => undefined, fenced: false, signal: new AbortController().signal };

export class TaskManager {
  readonly #store: NodeStore;
  readonly #events: EventBus;
  readonly #log: Logger;
  readonly #opts: TaskManagerOptions;
  readonly #running = new Map<string, { readonly done: Promise<void>; readonly cancel: AbortController }>();
  /**
   * Nodes a start or takeover of ours is reserving right now: already ours in the database but not yet
   * running, which the recovery sweep must not mistake for a reservation left by a stopped task.
   */
  readonly #starting = new Map<string, number>();
  readonly #stop = new AbortController();
  readonly #fence: FenceView;
  readonly #unreleased: UnreleasedReservations;

  constructor(store: NodeStore, events: EventBus, opts: TaskManagerOptions, log: Logger) {
    this.#store = store;
    this.#events = events;
    this.#opts = opts;
    this.#log = log;
    this.#fence = opts.fence ?? NEVER_FENCED;
    this.#unreleased = opts.unreleased ?? new UnreleasedReservations();
  }

  /** Releases the reservations tasks (and power verbs) left at rest while fenced; call once unfenced. Returns how many went. */
  releaseLeftovers(): Promise<number> {
    return this.#unreleased.releaseAll(this.#store, this.#opts.controllerId, this.#log);
  }

  /** Releases now, or once unfenced when the fence refuses it: a node at rest must not stay locked under our name. */
  async #release(nodeUuid: string, epoch: number): Promise<void> {
    if (this.#fence.fenced) {
      this.#unreleased.add(nodeUuid, epoch);
      return;
    }
    try {
      await this.#store.release(nodeUuid, this.#opts.controllerId, epoch);
    } catch (err) {
      if (err instanceof FencedError) this.#unreleased.add(nodeUuid, epoch);
      else this.#log.error({ err, node: nodeUuid }, 'could not release the reservation');
    }
  }

  get controllerId(): string {
    return this.#opts.controllerId;
  }

  /** Resolves to the owner epoch taken. */
  async #reserve(nodeUuid: string): Promise<number> {
    // A task that just reached its last state still releases the lock a moment later: a verb right
    // after it (manage --wait, then provide) waits that moment out instead of failing.
    const deadline = Date.now() + (this.#opts.lockWaitMs ?? 5000);
    let checkedHolder = false;
    for (;;) {
      this.#fence.check();
      const epoch = await this.#store.reserve(nodeUuid, this.#opts.controllerId);
      if (epoch !== null) return epoch;
      if (!checkedHolder && this.#opts.breakDead) {
        checkedHolder = true;
        if (await this.#opts.breakDead(nodeUuid)) {
          this.#log.warn({ node: nodeUuid }, 'broke the reservation of a controller whose heartbeat lapsed');
          continue;
        }
      }
      if (Date.now() >= deadline) {
        const node = await this.#store.findNode(nodeUuid);
        if (!node) throw new NotFoundError('node', nodeUuid);
        throw new NodeLockedError(nodeUuid, node.reservation);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Reserves the node, applies `event`, and runs `work` in the background under the reservation.
   * Resolves with the node after the first transition; a transition the state table refuses is
   * a FAILED_PRECONDITION naming the current state, and leaves the node untouched.
   */
  async start(
    id: string,
    event: ProvisionEvent,
    work: TaskWork,
    fields: StateFields = {},
    afterFailure?: AfterFailure,
  ): Promise<NodeRecord> {
    // Before any read: a fenced controller answers at once instead of waiting on a database it cannot reach.
    this.#fence.check();
    const found = await this.#store.findNode(id);
    if (!found) throw new NotFoundError('node', id);
    // Checked before locking too, so a wrong verb is refused even while another task runs.
    nextState(found.uuid, found.provisionState, event);
    this.#markStarting(found.uuid, 1);
    try {
      const epoch = await this.#reserve(found.uuid);
      const owner = { controllerId: this.#opts.controllerId, epoch };
      let node: NodeRecord;
      try {
        const current = await this.#store.findNode(found.uuid);
        if (!current) throw new NotFoundError('node', found.uuid);
        this.#fence.check();
        node = await this.#transition(current, event, fields, owner);
      } catch (err) {
        // Nothing moved: the node is where it was, at rest or not, and must not keep our lock.
        await this.#release(found.uuid, epoch);
        throw err;
      }
      this.adopt(node, work, afterFailure, epoch);
      return node;
    } finally {
      this.#markStarting(found.uuid, -1);
    }
  }

  /**
   * Takes over a node left mid-task (its controller stopped or died): reserves it (breaking a dead
   * holder's reservation) and runs `work` from the state it is in, without a transition.
   */
  async takeOver(nodeUuid: string, work: TaskWork, afterFailure?: AfterFailure): Promise<NodeRecord> {
    this.#markStarting(nodeUuid, 1);
    try {
      const epoch = await this.#reserve(nodeUuid);
      const node = await this.#store.findNode(nodeUuid);
      if (!node) {
        await this.#store.release(nodeUuid, this.#opts.controllerId, epoch);
        throw new NotFoundError('node', nodeUuid);
      }
      this.adopt(node, work, afterFailure, epoch);
      return node;
    } finally {
      this.#markStarting(nodeUuid, -1);
    }
  }

  #markStarting(nodeUuid: string, delta: 1 | -1): void {
    const n = (this.#starting.get(nodeUuid) ?? 0) + delta;
    if (n > 0) this.#starting.set(nodeUuid, n);
    else this.#starting.delete(nodeUuid);
  }

  /**
   * Runs `work` on a node this controller has already reserved and moved (the scheduler's claim does both
   * in one UPDATE, bumping the epoch the record carries).
   */
  adopt(node: NodeRecord, work: TaskWork, afterFailure?: AfterFailure, epoch = node.ownerEpoch): void {
    const cancel = new AbortController();
    const owner = { controllerId: this.#opts.controllerId, epoch };
    const done = this.#run(node, work, cancel.signal, owner, afterFailure).finally(() => this.#running.delete(node.uuid));
    this.#running.set(node.uuid, { done, cancel });
  }

  /** Stops this controller's task on the node (it fails with `reason`) and waits until it let go. False when none runs here. */
  async cancel(nodeUuid: string, reason: string): Promise<boolean> {
    const task = this.#running.get(nodeUuid);
    if (!task) return false;
    task.cancel.abort(new TaskCancelledError(nodeUuid, reason));
    await task.done;
    return true;
  }

  async #transition(node: NodeRecord, event: ProvisionEvent, fields: StateFields, owner: NodeOwner, message?: string): Promise<NodeRecord> {
    const to = nextState(node.uuid, node.provisionState, event);
    let current = node;
    for (let attempt = 0; attempt < 5; attempt++) {
      const updated = await this.#store.transitionFrom(current, to, fields, owner);
      if (updated) {
        this.#events.publish({
          nodeUuid: updated.uuid,
          type: 'provision.changed',
          provisionState: to,
          powerState: updated.powerState,
          ...(message ? { message } : fields.lastError ? { message: fields.lastError } : {}),
          details: { event, from: current.provisionState },
        });
        return updated;
      }
      // The version moved under us: an observation (power sync, a heartbeat) or another writer.
      // Continue only if the node is still where we left it and still ours.
      const reread = await this.#store.findNode(current.uuid);
      if (!reread) throw new NotFoundError('node', current.uuid);
      if (reread.reservation !== owner.controllerId || reread.ownerEpoch !== owner.epoch)
        throw new StaleOwnerError(current.uuid, owner, reread.reservation, reread.ownerEpoch);
      if (
        reread.provisionState !== current.provisionState ||
        (reread.reservation !== null && reread.reservation !== this.#opts.controllerId)
      ) {
        throw new ConflictError(
          `node ${current.uuid} changed meanwhile (now ${reread.provisionState}, reserved by ${reread.reservation ?? 'nobody'}); ${event} not applied`,
          { node: current.uuid },
        );
      }
      current = reread;
    }
    throw new ConflictError(`node ${node.uuid} kept changing; ${event} not applied`, { node: node.uuid });
  }

  async #run(initial: NodeRecord, work: TaskWork, cancelled: AbortSignal, owner: NodeOwner, afterFailure?: AfterFailure): Promise<void> {
    let node = initial;
    // The fence's signal of now: once it closes, this task is over even if the fence opens again (the sweep resumes the node).
    const fenced = this.#fence.signal;
    const ctx: TaskContext = {
      signal: AbortSignal.any([this.#stop.signal, cancelled, fenced]),
      owner,
      checkFence: () => {
        if (fenced.aborted) throw fenced.reason;
        this.#fence.check();
      },
      node: () => node,
      advance: async (event, fields = {}, message) => {
        ctx.checkFence();
        node = await this.#transition(node, event, fields, owner, message);
        return node;
      },
      record: async (fields) => {
        ctx.checkFence();
        await this.#store.recordState(node.uuid, fields, owner);
        node = (await this.#store.findNode(node.uuid)) ?? node;
      },
      refresh: async () => {
        ctx.checkFence();
        node = (await this.#store.findNode(node.uuid)) ?? node;
        return node;
      },
      publish: (type, details = {}, message) =>
        this.#events.publish({
          nodeUuid: node.uuid,
          type,
          provisionState: node.provisionState,
          powerState: node.powerState,
          details,
          ...(message ? { message } : {}),
        }),
    };
    // A task stopped by the fence leaves its reservation for a peer to break (or for our own sweep once unfenced);
    // a superseded one has none. One that ended on its own releases, or once unfenced if the fence closed meanwhile.
    let release = true;
    try {
      await work(ctx);
    } catch (err) {
      if (err instanceof StaleOwnerError) {
        release = false;
        this.#log.warn(
          { node: node.uuid, epoch: owner.epoch, holder: err.context.holder },
          'task ended: the node was taken over meanwhile; not touching it',
        );
      } else if (fenced.aborted || err instanceof FencedError) {
        release = false;
        this.#log.warn({ node: node.uuid, state: node.provisionState }, 'task stopped by the fence; the node keeps its state');
      } else if (this.#stop.signal.aborted) {
        this.#log.warn({ node: node.uuid, state: node.provisionState }, 'task interrupted by stop; the node keeps its state');
      } else {
        const reason = await this.#fail(ctx, node, cancelled.aborted ? cancelled.reason : err);
        await afterFailure?.(reason).catch((hookErr: unknown) =>
          this.#log.error({ err: hookErr, node: node.uuid }, 'after-failure step failed'),
        );
      }
    } finally {
      if (release) await this.#release(node.uuid, owner.epoch);
    }
  }

  async #fail(ctx: TaskContext, node: NodeRecord, err: unknown): Promise<string> {
    const reason = err instanceof Error ? err.message : String(err);
    this.#log.warn({ node: node.uuid, state: node.provisionState, reason }, 'task failed');
    try {
      const current = await ctx.refresh();
      if (TRANSITIONS.some((t) => t.from === current.provisionState && t.event === 'fail'))
        await ctx.advance('fail', { lastError: reason });
      else await ctx.record({ lastError: reason });
    } catch (recordErr) {
      this.#log.error({ err: recordErr, node: node.uuid }, 'could not record a failed task');
    }
    return reason;
  }

  /** True while a task of this controller runs on the node, or is reserving it to run. */
  busy(nodeUuid: string): boolean {
    return this.#running.has(nodeUuid) || this.#starting.has(nodeUuid);
  }

  /** Stops every task (they keep their nodes' states, for a takeover) and waits for them to let go. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled([...this.#running.values()].map((t) => t.done));
  }

  /** Waits for the running tasks to end on their own. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#running.values()].map((t) => t.done));
  }
}
