/**
 * Reservations must not outlive their controller. A reservation whose
 * holder's heartbeat in the `controllers` table is older than the dead-after
 * interval (or whose holder has no row: it left, or never joined) is broken
 * by whoever next needs the node, in one conditional UPDATE that re-checks
 * the holder's liveness in the database itself. Breaking bumps the owner
 * epoch, so the dead holder's writes, should it wake up, are refused.
 */
import { and, eq, isNotNull, sql } from 'drizzle-orm';
import { type Database, controllers, nodes } from '../../db/index.ts';

export class DeadReservations {
  readonly #db: Database;
  readonly #deadAfterMs: number;
  readonly #self: string;

  constructor(db: Database, deadAfterMs: number, self: string) {
    this.#db = db;
    this.#deadAfterMs = deadAfterMs;
    this.#self = self;
  }

  /** Breaks the node's reservation if its holder is dead; true when it did. Never breaks this controller's own. */
  async breakIfDead(nodeUuid: string): Promise<boolean> {
    const alive = sql`EXISTS (SELECT 1 FROM ${controllers} WHERE ${controllers.id} = ${nodes.reservation} AND ${controllers.heartbeatAt} > NOW(3) - INTERVAL ${this.#deadAfterMs * 1000} MICROSECOND)`;
    const [result] = await this.#db
      .update(nodes)
      .set({ reservation: null, ownerEpoch: sql`${nodes.ownerEpoch} + 1` })
      .where(and(eq(nodes.uuid, nodeUuid), isNotNull(nodes.reservation), sql`${nodes.reservation} <> ${this.#self}`, sql`NOT ${alive}`));
    return result.affectedRows === 1;
  }
}
