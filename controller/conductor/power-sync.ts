/**
 * The periodic power-state sync: read every owned node's power state from its
 * BMC with bounded concurrency, record what changed (or, when configured,
 * enforce what the controller expects), and flag nodes whose BMC keeps
 * failing. Nodes locked by a running task are skipped: that task owns the
 * node's power for now.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { EventBus } from '../events/index.ts';
import type { BmcTarget, PowerControlFactory, PowerState } from '../drivers/power/index.ts';

export interface SyncCandidate {
  readonly uuid: string;
  readonly provisionState: string;
  /** What the controller believes: the last recorded state. */
  readonly powerState: string;
  readonly maintenance: boolean;
  readonly failures: number;
  readonly target: BmcTarget;
}

/**
 * A node whose sealed BMC password cannot be opened (the key was rotated, the
 * row restored from another cluster). It fails alone: it gets last_error and
 * is skipped, and the sweep polls every other node.
 */
export interface UnreadableCandidate {
  readonly uuid: string;
  readonly provisionState: string;
  readonly failures: number;
  readonly lastError: string | null;
  /** Why the password could not be decrypted; never the password. */
  readonly passwordError: string;
}

export type SweepEntry = SyncCandidate | UnreadableCandidate;

function isUnreadable(entry: SweepEntry): entry is UnreadableCandidate {
  return 'passwordError' in entry;
}

export interface PowerSyncStore {
  /** Nodes this controller syncs: in its groups, with BMC credentials, not reserved, and `mine` (default: all). */
  candidates(mine?: (node: { readonly uuid: string; readonly group: string }) => boolean): Promise<readonly SweepEntry[]>;
  recordPower(uuid: string, state: PowerState): Promise<void>;
  /** Sets the consecutive-failure count and, when given, last_error. */
  recordFailures(uuid: string, failures: number, lastError: string | null): Promise<void>;
}

export interface PowerSyncOptions {
  readonly intervalMs: number;
  readonly concurrency: number;
  /** Re-apply the recorded state when the BMC disagrees, instead of recording the BMC's. */
  readonly enforce: boolean;
  readonly failureThreshold: number;
  readonly callTimeoutMs: number;
  /** True while the controller is fenced: the sync reads and writes nothing (a peer may own these nodes now). */
  readonly paused?: () => boolean;
  /**
   * Read once per sweep: which nodes this controller owns (the hash ring over the live members), so each
   * node is polled by one member and the polling moves with ownership. Absent: every node of the groups.
   */
  readonly owned?: () => Promise<(node: { readonly uuid: string; readonly group: string }) => boolean>;
}

export interface SweepReport {
  readonly nodes: number;
  readonly changed: number;
  readonly enforced: number;
  readonly failed: number;
  readonly flagged: number;
  /** Nodes skipped because their BMC password cannot be decrypted. */
  readonly unreadable: number;
  readonly durationMs: number;
}

class CallTimeout extends Error {}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new CallTimeout(`no answer within ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(timer));
}

export class PowerSync {
  readonly #store: PowerSyncStore;
  readonly #factory: PowerControlFactory;
  readonly #events: EventBus;
  readonly #opts: PowerSyncOptions;
  readonly #log: Logger;
  readonly #calls: Counter;
  readonly #failures: Counter;
  readonly #latency: Histogram;
  readonly #sweepSeconds: Gauge;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<SweepReport> | null = null;

  constructor(
    store: PowerSyncStore,
    factory: PowerControlFactory,
    events: EventBus,
    opts: PowerSyncOptions,
    registry: Registry,
    log: Logger,
  ) {
    this.#store = store;
    this.#factory = factory;
    this.#events = events;
    this.#opts = opts;
    this.#log = log;
    this.#calls = new Counter({ name: 'bm_power_sync_calls_total', help: 'BMC power-state reads by the sync loop', registers: [registry] });
    this.#failures = new Counter({
      name: 'bm_power_sync_failures_total',
      help: 'Failed BMC power-state reads by the sync loop',
      registers: [registry],
    });
    this.#latency = new Histogram({
      name: 'bm_power_sync_call_seconds',
      help: 'Latency of one BMC power-state read',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    });
    this.#sweepSeconds = new Gauge({
      name: 'bm_power_sync_last_sweep_seconds',
      help: 'Duration of the last full sweep',
      registers: [registry],
    });
  }

  start(): void {
    const tick = (): void => {
      this.sweep()
        .catch((err: unknown) => this.#log.error({ err }, 'power sync sweep failed'))
        .finally(() => {
          if (this.#timer !== undefined) this.#timer = setTimeout(tick, this.#opts.intervalMs);
        });
    };
    this.#timer = setTimeout(tick, this.#opts.intervalMs);
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  /** One full pass; concurrent callers share the running one. */
  sweep(): Promise<SweepReport> {
    this.#running ??= this.#sweep().finally(() => (this.#running = null));
    return this.#running;
  }

  async #sweep(): Promise<SweepReport> {
    const started = performance.now();
    const paused = this.#opts.paused ?? (() => false);
    const nodes = paused() ? [] : await this.#store.candidates(this.#opts.owned ? await this.#opts.owned() : undefined);
    const totals = { changed: 0, enforced: 0, failed: 0, flagged: 0, unreadable: 0 };
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < nodes.length && !paused()) {
        const node = nodes[next++]!;
        // One node's trouble (its store write, its enforce call) is its own; the sweep goes on.
        const outcome = await (isUnreadable(node) ? this.#skipUnreadable(node) : this.#syncOne(node)).catch((err: unknown) => {
          this.#log.warn({ err, node: node.uuid }, 'power sync of one node failed');
          return 'failed' as const;
        });
        if (outcome !== 'same') totals[outcome]++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#opts.concurrency, nodes.length) }, worker));
    const durationMs = performance.now() - started;
    this.#sweepSeconds.set(durationMs / 1000);
    const report = { nodes: nodes.length, ...totals, durationMs: Math.round(durationMs) };
    this.#log.debug(report, 'power sync sweep done');
    return report;
  }

  async #skipUnreadable(node: UnreadableCandidate): Promise<'unreadable'> {
    const lastError = `cannot decrypt the BMC password: ${node.passwordError}`;
    // Said once, not every interval: the node stays skipped until an operator sets its password again.
    if (node.lastError !== lastError) {
      await this.#store.recordFailures(node.uuid, node.failures, lastError);
      this.#log.warn({ node: node.uuid, reason: node.passwordError }, 'power sync skips a node whose BMC password cannot be decrypted');
      this.#events.publish({ nodeUuid: node.uuid, type: 'power.sync-failing', provisionState: node.provisionState, message: lastError });
    }
    return 'unreadable';
  }

  async #syncOne(node: SyncCandidate): Promise<'same' | 'changed' | 'enforced' | 'failed' | 'flagged'> {
    const end = this.#latency.startTimer();
    this.#calls.inc();
    let state: PowerState;
    try {
      const control = this.#factory(node.target);
      try {
        state = await withTimeout(control.getPowerState(), this.#opts.callTimeoutMs);
      } finally {
        void control.close().catch(() => undefined);
      }
    } catch (err) {
      end();
      this.#failures.inc();
      const failures = node.failures + 1;
      const reason = err instanceof Error ? err.message : String(err);
      const flag = failures === this.#opts.failureThreshold;
      await this.#store.recordFailures(node.uuid, failures, flag ? `power sync failing: ${reason}` : null);
      if (flag)
        this.#events.publish({
          nodeUuid: node.uuid,
          type: 'power.sync-failing',
          provisionState: node.provisionState,
          message: reason,
          details: { failures: String(failures) },
        });
      return flag ? 'flagged' : 'failed';
    }
    end();
    // Fenced while the BMC answered: what it said is not ours to record.
    if (this.#opts.paused?.()) return 'same';
    if (node.failures > 0) await this.#store.recordFailures(node.uuid, 0, null);
    if (state === node.powerState) return 'same';
    const expected = node.powerState;
    if (this.#opts.enforce && !node.maintenance && (expected === 'on' || expected === 'off')) {
      const control = this.#factory(node.target);
      try {
        await withTimeout(control.setPowerState(expected), this.#opts.callTimeoutMs);
      } finally {
        void control.close().catch(() => undefined);
      }
      this.#events.publish({
        nodeUuid: node.uuid,
        type: 'power.enforced',
        powerState: expected,
        provisionState: node.provisionState,
        details: { found: state },
      });
      return 'enforced';
    }
    await this.#store.recordPower(node.uuid, state);
    this.#events.publish({
      nodeUuid: node.uuid,
      type: 'power.changed',
      powerState: state,
      provisionState: node.provisionState,
      details: { was: expected, source: 'sync' },
    });
    return 'changed';
  }
}
