/**
 * A batch of claims as one transaction: one conditional UPDATE takes every
 * assigned node (each still exactly as the window read it: same version,
 * still free), what the won claims bind is written by one call per binding
 * (one multi-row INSERT of instance rows), and one COMMIT makes them all
 * durable. Rows another controller took meanwhile simply do not match; the
 * row locks the UPDATE takes (in primary-key order, so two batches never
 * deadlock each other) keep two controllers from both winning one node.
 */
import { and, eq, inArray, type SQL, sql } from 'drizzle-orm';
import { type Database, nodes, type NodeRow } from '../../db/index.ts';
import type { Transaction } from './types.ts';

/** Writes what won claims bind to their nodes, all of a batch's at once (e.g. one multi-row INSERT). */
export interface ClaimWriter<T> {
  /** Its error rolls the whole batch back. */
  write(tx: Transaction, items: readonly T[]): Promise<void>;
}

/** Rows a claim writes with its node, in the claim's transaction. Claims of one batch with the same writer are written by one call. */
export interface BindClaim<T = unknown> {
  readonly writer: ClaimWriter<T>;
  /** This claim's item, once its node is known. */
  item(nodeUuid: string): T;
}

/** One claim's node, as the claim's UPDATE sets it. */
export interface Assignment {
  readonly row: NodeRow;
  readonly instanceUuid: string;
  readonly reservation: string;
  readonly bind: BindClaim | undefined;
}

/** The columns a claim sets on its node (besides the per-node ones); what the won record carries. */
export function claimedFields(row: NodeRow, instanceUuid: string, reservation: string, provisionState: string, updatedAt: Date) {
  return {
    instanceUuid,
    provisionState,
    targetProvisionState: 'active',
    reservation,
    // The version check makes this bump atomic with the claim: the deploy's writes carry it.
    ownerEpoch: row.ownerEpoch + 1,
    lastError: null,
    version: row.version + 1,
    updatedAt,
  };
}

/** A free node: available, not in maintenance, no instance, no task. */
export const FREE = and(
  eq(nodes.provisionState, 'available'),
  eq(nodes.maintenance, false),
  sql`${nodes.instanceUuid} IS NULL`,
  sql`${nodes.reservation} IS NULL`,
);

function caseByUuid(pairs: readonly (readonly [string, string | number])[]): SQL {
  return sql`CASE ${nodes.uuid} ${sql.join(
    pairs.map(([uuid, value]) => sql`WHEN ${uuid} THEN ${value}`),
    sql` `,
  )} END`;
}

/**
 * Claims the assigned nodes in one transaction. Resolves to the uuids of the nodes won (each assignment's node at most
 * once); a database or bind error rejects, and then nothing of the batch was written.
 */
export async function claimBatch(
  db: Database,
  assignments: readonly Assignment[],
  provisionState: string,
  now: Date,
): Promise<Set<string>> {
  const uuids = assignments.map((a) => a.row.uuid);
  return db.transaction(async (tx) => {
    const [result] = await tx
      .update(nodes)
      .set({
        instanceUuid: caseByUuid(assignments.map((a) => [a.row.uuid, a.instanceUuid])),
        reservation: caseByUuid(assignments.map((a) => [a.row.uuid, a.reservation])),
        provisionState,
        targetProvisionState: 'active',
        ownerEpoch: sql`${nodes.ownerEpoch} + 1`,
        lastError: null,
        version: sql`${nodes.version} + 1`,
        updatedAt: now,
      })
      .where(
        and(
          inArray(nodes.uuid, uuids),
          // Each node exactly as its window read it: the won record is the window's row plus this UPDATE.
          sql`${nodes.version} = ${caseByUuid(assignments.map((a) => [a.row.uuid, a.row.version]))}`,
          FREE,
        ),
      );
    let won: Set<string>;
    if (result.affectedRows === assignments.length) won = new Set(uuids);
    else {
      // Some went to another controller meanwhile: this transaction sees its own writes, so a node is ours iff it holds our instance.
      const ours = new Map(assignments.map((a) => [a.row.uuid, a.instanceUuid]));
      const rows = await tx.select({ uuid: nodes.uuid, instanceUuid: nodes.instanceUuid }).from(nodes).where(inArray(nodes.uuid, uuids));
      won = new Set(rows.filter((r) => r.instanceUuid !== null && ours.get(r.uuid) === r.instanceUuid).map((r) => r.uuid));
    }
    const byWriter = new Map<ClaimWriter<unknown>, unknown[]>();
    for (const a of assignments) {
      if (!a.bind || !won.has(a.row.uuid)) continue;
      const items = byWriter.get(a.bind.writer) ?? [];
      items.push(a.bind.item(a.row.uuid));
      byWriter.set(a.bind.writer, items);
    }
    for (const [writer, items] of byWriter) await writer.write(tx, items);
    return won;
  });
}
