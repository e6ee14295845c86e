/**
 * Admission for DHCP exchanges: past the lease store's capacity, a server
 * that takes every packet queues them all on the database, answers each
 * after its client gave up, and falls to a fraction of its capacity. So a
 * bounded number run at once, a bounded queue waits, and the excess is shed
 * before it costs a query:
 * - REQUESTs go first: each completes an exchange a client has already
 *   invested an OFFER in, where a DISCOVER only starts one;
 * - DISCOVERs wait first-in first-out while the queue is short, and
 *   last-in first-out once the oldest has waited past targetDelayMs
 *   ("adaptive LIFO"): under sustained overload the newest are answered in
 *   time, instead of every answer arriving after its client gave up, while
 *   a burst (a rack powering on, whose PXE ROMs wait 4 s) is still drained
 *   whole;
 * - a DISCOVER that waited longer than maxWaitMs is shed, and a full queue
 *   sheds its oldest DISCOVER to make room.
 */

export interface AdmissionOptions {
  /** Exchanges handled at once (about twice the database pool). */
  readonly concurrency: number;
  /** Exchanges waiting for a slot, over both priorities. */
  readonly maxQueued: number;
  /** Once the oldest queued DISCOVER waited this long, the newest go first. */
  readonly targetDelayMs: number;
  /** A queued DISCOVER older than this is shed (a PXE ROM retransmits after 4 s). */
  readonly maxWaitMs: number;
  readonly now?: () => number;
}

interface Job {
  readonly at: number;
  readonly run: () => Promise<void>;
}

/** A double-ended queue over an array with a moving head (compacted now and then). */
class Deque<T> {
  #items: T[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  first(): T | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head] : undefined;
  }
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
  pop(): T | undefined {
    return this.length > 0 ? this.#items.pop() : undefined;
  }
}

export type AdmissionOutcome = 'started' | 'queued' | 'shed';

export class Admission {
  readonly #o: AdmissionOptions;
  readonly #now: () => number;
  readonly #high = new Deque<Job>();
  readonly #low = new Deque<Job>();
  readonly #onShed: () => void;
  #running = 0;
  /** Jobs dropped without running (full queue or too old), for stats. */
  shed = 0;

  constructor(options: AdmissionOptions, onShed: () => void = () => undefined) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
    this.#onShed = onShed;
  }

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#high.length + this.#low.length;
  }

  /** `run` must not reject (the caller catches inside it). */
  submit(high: boolean, run: () => Promise<void>): AdmissionOutcome {
    if (this.#running < this.#o.concurrency && this.queued === 0) {
      this.#start(run);
      return 'started';
    }
    if (this.queued >= this.#o.maxQueued) {
      if (this.#low.length === 0) {
        this.#dropOne();
        return 'shed';
      }
      this.#low.shift();
      this.#dropOne();
    }
    (high ? this.#high : this.#low).push({ at: this.#now(), run });
    this.#pump();
    return 'queued';
  }

  #dropOne(): void {
    this.shed++;
    this.#onShed();
  }

  #start(run: () => Promise<void>): void {
    this.#running++;
    void run().finally(() => {
      this.#running--;
      this.#pump();
    });
  }

  #pump(): void {
    const now = this.#now();
    while (this.#running < this.#o.concurrency) {
      for (let oldest = this.#low.first(); oldest !== undefined && now - oldest.at > this.#o.maxWaitMs; oldest = this.#low.first()) {
        this.#low.shift();
        this.#dropOne();
      }
      let job = this.#high.shift();
      if (job === undefined) {
        const oldest = this.#low.first();
        if (oldest === undefined) return;
        job = now - oldest.at > this.#o.targetDelayMs ? this.#low.pop() : this.#low.shift();
      }
      this.#start(job!.run);
    }
  }
}
