/**
 * This controller's row in the `controllers` table, refreshed on an interval,
 * and its heartbeat on NATS (`<prefix>.controllers.<id>.heartbeat`). Every
 * member also sweeps: a row whose heartbeat is older than dead_after is
 * deleted in one conditional statement, and whoever deleted it announces the
 * death once (a `controller.dead` event). Joins are announced too.
 *
 * Each renew tells the fence (fence.ts) when it started and whether it
 * landed; one renew runs at a time and gives up after a bound, so a database
 * that stopped answering cannot pile statements up in the pool. A renew that
 * finds our row gone (peers declared us dead while we were frozen or cut
 * off) joins again: our old reservations were broken with their epochs, so
 * nothing we still hold in memory can write.
 */
import os from 'node:os';
import { and, eq, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { type Database, controllers, type ControllerRow } from '../../db/index.ts';
import type { EventBus } from '../events/index.ts';
import type { Fence } from './fence.ts';

export interface MembershipOptions {
  readonly id: string;
  readonly apiAddress: string;
  readonly groups: readonly string[];
  readonly intervalMs: number;
  /** A peer silent this long is dead. */
  readonly deadAfterMs: number;
  /** A renew not answered within this is counted as failed (default: the interval, at least 1 s). */
  readonly renewTimeoutMs?: number;
}

class RenewTimeout extends Error {}

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
  readonly #fence: Fence | null;
  #beating = false;
  #failing = false;
  /** Monotonic time since which our renews succeed; null while they fail. */
  #healthySince: number | null = null;

  constructor(db: Database, opts: MembershipOptions, log: Logger, bus: MembershipBus | null = null, fence: Fence | null = null) {
    this.#db = db;
    this.#opts = opts;
    this.#log = log;
    this.#bus = bus;
    this.#fence = fence;
  }

  #withTimeout<T>(work: Promise<T>): Promise<T> {
    const ms = this.#opts.renewTimeoutMs ?? Math.max(1000, this.#opts.intervalMs);
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new RenewTimeout(`heartbeat renew not answered within ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /** One renew: the UPDATE of our row (a re-join when peers removed it), then the fence hears of it. */
  async #renew(): Promise<void> {
    const started = this.#fence?.renewStarted() ?? 0;
    const [result] = await this.#withTimeout(
      this.#db.update(controllers).set({ heartbeatAt: sql`CURRENT_TIMESTAMP(3)` }).where(eq(controllers.id, this.#opts.id)),
    );
    if (result.affectedRows === 0) {
      this.#log.warn({ id: this.#opts.id }, 'our controller row was gone (peers found us dead); joining again');
      await this.#withTimeout(this.#insertRow(new Date()));
    }
    this.#fence?.renewed(started);
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
    try {
      await this.#renew();
      if (this.#failing) this.#log.warn({ id: this.#opts.id }, 'controller heartbeat renewed again');
      this.#failing = false;
      this.#healthySince ??= performance.now();
    } catch (err) {
      // Said once per outage, not every interval.
      if (!this.#failing) this.#log.warn({ err }, 'controller heartbeat renew failed; retrying every interval');
      this.#failing = true;
      this.#healthySince = null;
      return;
    }
    if (!this.settled) return;
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

  /**
   * True once our own renews have succeeded for a whole dead_after: only then may a stale peer row mean
   * a dead peer. Right after an outage of the database every row is stale, and the peers need one
   * interval to renew theirs; judging them before would take over nodes of controllers that are alive.
   */
  get settled(): boolean {
    return this.#healthySince !== null && performance.now() - this.#healthySince >= this.#opts.deadAfterMs;
  }

  async #insertRow(now: Date): Promise<void> {
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
  }

  async join(): Promise<void> {
    const started = this.#fence?.renewStarted() ?? 0;
    await this.#insertRow(new Date());
    this.#fence?.renewed(started);
    this.#healthySince = performance.now();
    this.#bus?.events.publish({
      nodeUuid: '',
      type: 'controller.joined',
      details: { controller: this.#opts.id, api: this.#opts.apiAddress, groups: this.#opts.groups.join(',') },
    });
    this.#timer = setInterval(() => {
      // A renew still waiting on the database is not joined by another: the pool would fill with them.
      if (this.#beating) return;
      this.#beating = true;
      this.#beat()
        .catch((err: unknown) => this.#log.warn({ err }, 'controller heartbeat failed'))
        .finally(() => (this.#beating = false));
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
