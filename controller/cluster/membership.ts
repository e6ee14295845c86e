/**
 * This controller's row in the `controllers` table, refreshed on an interval.
 * Peers treat a row whose heartbeat is older than a few intervals as dead
 * (takeover itself comes with the conductor).
 */
import os from 'node:os';
import { eq, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../../db/connect.ts';
import { controllers } from '../../db/schema.ts';

export interface MembershipOptions {
  readonly id: string;
  readonly apiAddress: string;
  readonly groups: readonly string[];
  readonly intervalMs: number;
}

export class Membership {
  readonly #db: Database;
  readonly #opts: MembershipOptions;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;

  constructor(db: Database, opts: MembershipOptions, log: Logger) {
    this.#db = db;
    this.#opts = opts;
    this.#log = log;
  }

  async join(): Promise<void> {
    const now = new Date();
    await this.#db
      .insert(controllers)
      .values({ id: this.#opts.id, hostname: os.hostname(), apiAddress: this.#opts.apiAddress, groups: [...this.#opts.groups], startedAt: now, heartbeatAt: now })
      .onDuplicateKeyUpdate({ set: { hostname: os.hostname(), apiAddress: this.#opts.apiAddress, groups: [...this.#opts.groups], startedAt: now, heartbeatAt: now } });
    this.#timer = setInterval(() => {
      this.#db
        .update(controllers)
        .set({ heartbeatAt: sql`CURRENT_TIMESTAMP(3)` })
        .where(eq(controllers.id, this.#opts.id))
        .catch((err: unknown) => this.#log.warn({ err }, 'controller heartbeat failed'));
    }, this.#opts.intervalMs);
    this.#timer.unref();
  }

  /** A graceful stop removes the row at once, so peers need not wait for it to expire. */
  async leave(): Promise<void> {
    clearInterval(this.#timer);
    await this.#db.delete(controllers).where(eq(controllers.id, this.#opts.id));
  }
}
