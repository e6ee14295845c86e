/**
 * A bound on the deploys this controller starts at once: arming the agent
 * token, bootdev and power-on through the BMC, and the move to wait-callback.
 * A boot storm's claims answer every boot at once (node claimed, instance
 * BUILD); without this, each claim's deploy started at once too, so 1,000
 * BMCs were powered on together and those starts competed with the claims
 * still coming for the controller's CPU and database pool.
 *
 * Nothing is kept here that a restart would lose: a queued deploy is a task
 * holding its claimed node (`deploying`, reserved, no token armed), and the
 * recovery sweep of the controller that next holds the node starts it from
 * the top, as it does any deploy interrupted before its power-on.
 */
import { Gauge, type Registry } from 'prom-client';

export class DeployStartQueue {
  readonly #concurrency: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];
  readonly #depth: Gauge | null;

  /** `concurrency`: deploy starts in flight at once (≥ 1). */
  constructor(concurrency: number, registry?: Registry) {
    if (!Number.isInteger(concurrency) || concurrency < 1)
      throw new RangeError(`deploy start concurrency must be a positive integer, got ${concurrency}`);
    this.#concurrency = concurrency;
    this.#depth = registry
      ? new Gauge({
          name: 'bm_deploy_start_queue_depth',
          help: 'Claimed deploys waiting for a deploy-start slot (token, bootdev, power-on) on this controller',
          registers: [registry],
        })
      : null;
  }

  /** Deploys waiting for a slot now. */
  get depth(): number {
    return this.#waiting.length;
  }

  /** Deploys starting now. */
  get running(): number {
    return this.#running;
  }

  /** Runs `start` once a slot is free, in arrival order. Aborted while waiting: rejects with the signal's reason, never runs. */
  async run<T>(signal: AbortSignal, start: () => Promise<T>): Promise<T> {
    signal.throwIfAborted();
    if (this.#running >= this.#concurrency) await this.#slot(signal);
    else this.#running++;
    try {
      return await start();
    } finally {
      this.#handOn();
    }
  }

  /** Resolves holding a slot (handed on by a start that finished). */
  #slot(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#waiting.indexOf(granted);
        if (i >= 0) this.#waiting.splice(i, 1);
        this.#depth?.set(this.#waiting.length);
        reject(signal.reason);
      };
      const granted = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      this.#waiting.push(granted);
      this.#depth?.set(this.#waiting.length);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The finished start's slot goes straight to the next in line (the running count stays), else it is freed. */
  #handOn(): void {
    const next = this.#waiting.shift();
    this.#depth?.set(this.#waiting.length);
    if (next) next();
    else this.#running--;
  }
}
