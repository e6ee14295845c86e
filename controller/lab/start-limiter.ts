/**
 * At most `concurrency` machines of the lab start their ramdisk (a Node
 * process) at once. Real machines boot on their own CPUs; the lab's share
 * this host's few cores, and fifty processes starting together starve each
 * other past their start-up timeouts. Queued starts run in arrival order.
 */
export class StartLimiter {
  readonly #concurrency: number;
  #running = 0;
  readonly #queue: (() => void)[] = [];

  constructor(concurrency: number) {
    if (!Number.isInteger(concurrency) || concurrency < 1)
      throw new RangeError(`concurrency must be a whole number >= 1, got ${concurrency}`);
    this.#concurrency = concurrency;
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#concurrency) await new Promise<void>((resolve) => this.#queue.push(resolve));
    else this.#running++;
    try {
      return await work();
    } finally {
      // The slot passes straight to the next in line, or is freed.
      const next = this.#queue.shift();
      if (next) next();
      else this.#running--;
    }
  }
}
