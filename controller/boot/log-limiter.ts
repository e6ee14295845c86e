/**
 * Rate-limited log lines for the boot servers: a PXE storm against a sick
 * database fails thousands of exchanges a second, and one line each would
 * bury the log (and cost more than the exchange). Each kind of line gets a
 * few per interval; the next line let through says how many were dropped.
 */
import { pino, type Logger } from 'pino';

/** The default for servers built without a logger (tests, benches): discards everything. */
export const silentLogger: Logger = pino({ level: 'silent' });

export class LogLimiter {
  readonly #perInterval: number;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #windows = new Map<string, { start: number; count: number; suppressed: number }>();

  constructor(perInterval = 5, intervalMs = 10_000, now: () => number = Date.now) {
    this.#perInterval = perInterval;
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /**
   * Whether a line of `kind` may be written now; when it may, the number of
   * lines of that kind dropped since the last one written (0 if none).
   */
  admit(kind: string): { readonly suppressed: number } | null {
    const now = this.#now();
    let w = this.#windows.get(kind);
    if (!w || now - w.start >= this.#intervalMs) {
      const suppressed = w?.suppressed ?? 0;
      w = { start: now, count: 0, suppressed: 0 };
      this.#windows.set(kind, w);
      w.count++;
      return { suppressed };
    }
    if (w.count >= this.#perInterval) {
      w.suppressed++;
      return null;
    }
    w.count++;
    return { suppressed: 0 };
  }
}

/** The message of an error for a log line (never a stack for expected failures, never an object that could carry a secret). */
export function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
