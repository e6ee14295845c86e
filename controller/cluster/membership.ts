/**
 * This controller's row in the `controllers` table, refreshed on an interval,
 * and its heartbeat on NATS (`<prefix>.controllers.<id>.heartbeat`). Every
 * member also sweeps: a row whose heartbeat is older than dead_after is
 * deleted in one conditional statement, and whoever deleted it announces the
 * death once (a `controller.dead` event). Joins are announced too.
 */
import os from 'node:os';
import { and, eq, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { type Database, controllers, type ControllerRow } from '../../db/index.ts';
import type { EventBus } from '../events/index.ts';

export interface MembershipOptions {
  readonly id: string;
  readonly apiAddress: string;
  readonly groups: readonly string[];
  readonly intervalMs: number;
  /** A peer silent this long is dead. */
  readonly deadAfterMs: number;
}

/** Where the membership announces itself (the NATS bus in the controller; absent in unit tests). */
export interface MembershipBus {
  readonly events: EventBus;
  heartbeat(id: string, payload: Uint8Array): void;
}

export class Membership {
  readonly #db: Database;
  readonly #opts: MembershipOptions;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;

  readonly #bus: MembershipBus | null;

  constructor(db: Database, opts: MembershipOptions, log: Logger, bus: MembershipBus | null = null) {
    this.#db = db;
    this.#opts = opts;
    this.#log = log;
    this.#bus = bus;
  }

  /** Every member's row; `alive` by the database's own clock. */
  async members(): Promise<(ControllerRow & { alive: boolean })[]> {
    const rows = await this.#db
      .select({
        row: controllers,
        alive: sql<number>`${controllers.heartbeatAt} > NOW(3) - INTERVAL ${this.#opts.deadAfterMs * 1000} MICROSECOND`,
      })
      .from(controllers)
      .orderBy(controllers.id);
    return rows.map((r) => ({ ...r.row, alive: Number(r.alive) === 1 }));
  }

  async #beat(): Promise<void> {
    await this.#db.update(controllers).set({ heartbeatAt: sql`CURRENT_TIMESTAMP(3)` }).where(eq(controllers.id, this.#opts.id));
    this.#bus?.heartbeat(
      this.#opts.id,
      new TextEncoder().encode(
        JSON.stringify({ id: this.#opts.id, api: this.#opts.apiAddress, groups: this.#opts.groups, at: new Date().toISOString() }),
      ),
    );
    // Announce each dead peer once: only the member whose DELETE removed its row says so.
    for (const peer of await this.members()) {
      if (peer.alive || peer.id === this.#opts.id) continue;
      // Re-checked in the statement itself: a peer that heartbeat since our read is not deleted.
      const [gone] = await this.#db
        .delete(controllers)
        .where(
          and(
            eq(controllers.id, peer.id),
            sql`${controllers.heartbeatAt} <= NOW(3) - INTERVAL ${this.#opts.deadAfterMs * 1000} MICROSECOND`,
          ),
        );
      if (gone.affectedRows === 1) {
        this.#log.warn({ peer: peer.id, lastHeartbeat: peer.heartbeatAt.toISOString() }, 'controller found dead');
        this.#bus?.events.publish({
          nodeUuid: '',
          type: 'controller.dead',
          message: `controller ${peer.id} stopped heartbeating`,
          details: { controller: peer.id, lastHeartbeat: peer.heartbeatAt.toISOString() },
        });
      }
    }
  }

  async join(): Promise<void> {
    const now = new Date();
    await this.#db
      .insert(controllers)
      .values({
        id: this.#opts.id,
        hostname: os.hostname(),
        apiAddress: this.#opts.apiAddress,
        groups: [...this.#opts.groups],
        startedAt: now,
        heartbeatAt: now,
      })
      .onDuplicateKeyUpdate({
        set: {
          hostname: os.hostname(),
          apiAddress: this.#opts.apiAddress,
          groups: [...this.#opts.groups],
          startedAt: now,
          heartbeatAt: now,
        },
      });
    this.#bus?.events.publish({
      nodeUuid: '',
      type: 'controller.joined',
      details: { controller: this.#opts.id, api: this.#opts.apiAddress, groups: this.#opts.groups.join(',') },
    });
    this.#timer = setInterval(() => {
      this.#beat().catch((err: unknown) => this.#log.warn({ err }, 'controller heartbeat failed'));
    }, this.#opts.intervalMs);
    this.#timer.unref();
  }

  /** A graceful stop removes the row at once, so peers need not wait for it to expire. */
  async leave(): Promise<void> {
    clearInterval(this.#timer);
    await this.#db.delete(controllers).where(eq(controllers.id, this.#opts.id));
    this.#bus?.events.publish({ nodeUuid: '', type: 'controller.left', details: { controller: this.#opts.id } });
  }
}
