/**
 * Refused (unauthenticated) calls are logged, but rate-limited: a probe that
 * sends a thousand bad tokens must leave a few lines, not a thousand. The
 * first refusal of a window is logged at once; the rest are counted and
 * summed up in one line when the window closes.
 */
import type { Logger } from 'pino';

export interface RefusalLogOptions {
  /** Length of one window; one line at its start, one summary at its end. */
  readonly windowMs: number;
  /** How many distinct peers the summary names. */
  readonly maxPeers: number;
}

const DEFAULTS: RefusalLogOptions = { windowMs: 60_000, maxPeers: 5 };

export class RefusalLog {
  readonly #log: Logger;
  readonly #options: RefusalLogOptions;
  #timer: NodeJS.Timeout | undefined;
  #suppressed = 0;
  readonly #peers = new Set<string>();
  readonly #methods = new Set<string>();

  constructor(log: Logger, options: Partial<RefusalLogOptions> = {}) {
    this.#log = log;
    this.#options = { ...DEFAULTS, ...options };
  }

  refused(method: string, peer: string): void {
    if (this.#timer === undefined) {
      this.#log.info({ method, peer }, 'refused unauthenticated call');
      this.#timer = setTimeout(() => this.#closeWindow(), this.#options.windowMs);
      // A pending summary must not keep a stopping process alive.
      this.#timer.unref();
      return;
    }
    this.#suppressed += 1;
    if (this.#peers.size < this.#options.maxPeers) this.#peers.add(peer);
    if (this.#methods.size < this.#options.maxPeers) this.#methods.add(method);
  }

  /** Writes the pending summary now (at stop). */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#closeWindow();
  }

  #closeWindow(): void {
    this.#timer = undefined;
    if (this.#suppressed === 0) return;
    this.#log.info(
      { refused: this.#suppressed, peers: [...this.#peers], methods: [...this.#methods], windowS: this.#options.windowMs / 1000 },
      'refused more unauthenticated calls (logged once per window)',
    );
    this.#suppressed = 0;
    this.#peers.clear();
    this.#methods.clear();
  }
}
