/**
 * Fencing: a controller that cannot renew its heartbeat stops acting on nodes
 * before its peers may take them over. Peers call it dead once its row's
 * heartbeat (written by the database, some time after we sent the renew) is
 * dead_after old; we fence ourselves once `fenceAfterMs` (half of dead_after
 * by default) has passed since the start of the last renew that succeeded.
 * The margin covers a renew that was slow to land and clocks that run at
 * slightly different rates; the owner epoch (nodes/owner.ts) covers the rest.
 *
 * The fenced state is computed from a monotonic clock on every check, not
 * only by a timer: a process resumed after SIGSTOP sees at its first check
 * that it is fenced, before any timer had a chance to run.
 */
import type { Logger } from 'pino';
import { BmError } from '../errors.ts';

/** Milliseconds from a monotonic source (performance.now in the controller; a hand-driven clock in tests). */
export type MonotonicClock = () => number;

export class FencedError extends BmError {
  constructor(controllerId: string, since: Date) {
    super(
      'unavailable',
      `controller fenced: cannot reach the database since ${since.toISOString()}; controller ${controllerId} acts on no node until its heartbeat renews (its peers take its nodes over)`,
      { controller: controllerId, since: since.toISOString() },
    );
  }
}

/** What the task manager, power sync and API handlers need of the fence. */
export interface FenceView {
  /** Throws FencedError while fenced. */
  check(): void;
  readonly fenced: boolean;
  /** Aborted (with a FencedError) when the fence closes; a fresh signal after each unfence. */
  readonly signal: AbortSignal;
}

export interface FenceOptions {
  readonly controllerId: string;
  readonly fenceAfterMs: number;
  /** How often the timer looks (the checks themselves compute the state). */
  readonly pollMs?: number;
  readonly clock?: MonotonicClock;
}

type Listener = () => void;

export class Fence implements FenceView {
  readonly #opts: FenceOptions;
  readonly #clock: MonotonicClock;
  readonly #log: Logger;
  /** Monotonic start of the last renew that succeeded. */
  #renewedAt: number;
  /** Wall-clock time of the same, for the operator. */
  #contactAt = new Date();
  #closed = false;
  /** Unarmed until the first renew (the join): a controller still starting has no row peers could find dead. */
  #armed = false;
  #open = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  readonly #onFenced: Listener[] = [];
  readonly #onUnfenced: Listener[] = [];

  constructor(opts: FenceOptions, log: Logger) {
    this.#opts = opts;
    this.#clock = opts.clock ?? (() => performance.now());
    this.#log = log;
    this.#renewedAt = this.#clock();
  }

  /** Call before sending a renew; pass the value to renewed() when it succeeded. */
  renewStarted(): number {
    return this.#clock();
  }

  /** A renew that started at `startedAt` reached the database. */
  renewed(startedAt: number): void {
    if (!this.#armed || startedAt > this.#renewedAt) {
      this.#armed = true;
      this.#renewedAt = startedAt;
      this.#contactAt = new Date(Date.now() - (this.#clock() - startedAt));
    }
    this.#update();
  }

  get fenced(): boolean {
    this.#update();
    return this.#closed;
  }

  get signal(): AbortSignal {
    this.#update();
    return this.#open.signal;
  }

  /** Monotonic time at which the fence closes if no renew succeeds before. */
  get deadline(): number {
    return this.#renewedAt + this.#opts.fenceAfterMs;
  }

  check(): void {
    if (this.fenced) throw new FencedError(this.#opts.controllerId, this.#contactAt);
  }

  onFenced(listener: Listener): void {
    this.#onFenced.push(listener);
  }

  onUnfenced(listener: Listener): void {
    this.#onUnfenced.push(listener);
  }

  start(): void {
    const poll = this.#opts.pollMs ?? Math.max(50, Math.min(500, this.#opts.fenceAfterMs / 10));
    this.#timer = setInterval(() => this.#update(), poll);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #update(): void {
    const shouldClose = this.#armed && this.#clock() >= this.deadline;
    if (shouldClose === this.#closed) return;
    this.#closed = shouldClose;
    if (shouldClose) {
      const err = new FencedError(this.#opts.controllerId, this.#contactAt);
      this.#log.error(
        { controller: this.#opts.controllerId, since: this.#contactAt.toISOString(), fenceAfterMs: this.#opts.fenceAfterMs },
        'controller fenced: heartbeat not renewed in time; tasks stop, power sync pauses, no new task starts',
      );
      this.#open.abort(err);
      for (const l of this.#onFenced) l();
    } else {
      this.#open = new AbortController();
      this.#log.warn({ controller: this.#opts.controllerId }, 'controller unfenced: heartbeat renewed; re-reading ownership');
      for (const l of this.#onUnfenced) l();
    }
  }
}
