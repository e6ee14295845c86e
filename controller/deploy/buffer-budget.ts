/**
 * One byte budget shared by every deploy stream of the controller: data
 * handed to grpc-js but not yet on a socket. The per-stream bound
 * (tuning.maxBufferedBytes) alone lets N streams hold N times it, plus the
 * image source buffers pinned until grpc-js copies them; with 50 deploys at
 * once that was most of the controller's memory. A stream waits here before
 * it hands over a frame; when the budget is spent it resumes as other
 * streams' frames reach their sockets (first come, first served).
 */
export class BufferBudget {
  readonly limitBytes: number;
  #used = 0;
  #peak = 0;
  readonly #waiting: { readonly bytes: number; readonly resolve: () => void }[] = [];

  constructor(limitBytes: number) {
    if (!Number.isSafeInteger(limitBytes) || limitBytes <= 0)
      throw new RangeError(`a buffer budget must be a positive number of bytes, got ${limitBytes}`);
    this.limitBytes = limitBytes;
  }

  /** Bytes held now, and the most ever held (a test and the bench read these). */
  get usedBytes(): number {
    return this.#used;
  }

  get peakBytes(): number {
    return this.#peak;
  }

  /**
   * Resolves once `bytes` fit. A request larger than the whole budget is
   * granted when nothing else is held, so one big frame cannot wait forever.
   */
  acquire(bytes: number, signal?: AbortSignal): Promise<void> {
    if (bytes <= 0) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#waiting.length === 0 && this.#fits(bytes)) {
      this.#take(bytes);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const entry = {
        bytes,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      // A stream that ends while it waits leaves the queue: it must not be granted bytes no one will release.
      const onAbort = (): void => {
        const at = this.#waiting.indexOf(entry);
        if (at >= 0) this.#waiting.splice(at, 1);
        reject(signal!.reason);
        this.release(0);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(entry);
    });
  }

  /** Gives bytes back and grants waiting requests in order (a removed waiter may unblock the next: release(0)). */
  release(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes);
    while (this.#waiting.length > 0 && this.#fits(this.#waiting[0]!.bytes)) {
      const next = this.#waiting.shift()!;
      this.#take(next.bytes);
      next.resolve();
    }
  }

  #fits(bytes: number): boolean {
    return this.#used === 0 || this.#used + bytes <= this.limitBytes;
  }

  #take(bytes: number): void {
    this.#used += bytes;
    if (this.#used > this.#peak) this.#peak = this.#used;
  }
}

/**
 * The controller's budget: 64 MiB lets 16 streams run at their full per-stream
 * bound (4 MiB: more stopped helping, docs/performance-notes.md) and caps 50
 * at the same total.
 */
export const DEPLOY_BUFFER_BUDGET = new BufferBudget(64 * 1024 * 1024);
