/**
 * Where a deploy's image write stands, kept in the node's row: which image
 * is being written and the last offset the agent committed. A stream that
 * breaks, or a controller that takes the node over after its owner died,
 * resumes from there; a different image starts from zero. Given the task's
 * owner, a write from an owner that lost the node is refused (StaleOwnerError),
 * so a late checkpoint of a taken-over deploy cannot move the new owner's.
 */
import { and, eq, sql } from 'drizzle-orm';
import { type Database, nodes } from '../../db/index.ts';
import { StaleOwnerError, type NodeOwner } from '../nodes/index.ts';

export interface DeployCheckpoints {
  /** Starts (or continues) writing `imageSha256` to the node; resolves to the offset to resume from. */
  begin(nodeUuid: string, imageSha256: string): Promise<number>;
  /** Records a committed offset; never moves backwards, and is ignored once another image is being written. */
  record(nodeUuid: string, imageSha256: string, committedOffset: number, owner?: NodeOwner): Promise<void>;
  /** The write is over (done or abandoned): nothing to resume. */
  clear(nodeUuid: string): Promise<void>;
}

export class MysqlDeployCheckpoints implements DeployCheckpoints {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async begin(nodeUuid: string, imageSha256: string): Promise<number> {
    // Another image's progress means nothing for this one: start it at zero.
    await this.#db
      .update(nodes)
      .set({ deployImageSha256: imageSha256, deployCommittedOffset: 0 })
      .where(and(eq(nodes.uuid, nodeUuid), sql`NOT (${nodes.deployImageSha256} <=> ${imageSha256})`));
    const [row] = await this.#db.select({ offset: nodes.deployCommittedOffset }).from(nodes).where(eq(nodes.uuid, nodeUuid));
    return row?.offset ?? 0;
  }

  async record(nodeUuid: string, imageSha256: string, committedOffset: number, owner?: NodeOwner): Promise<void> {
    const where = [eq(nodes.uuid, nodeUuid), eq(nodes.deployImageSha256, imageSha256)];
    if (owner) where.push(eq(nodes.reservation, owner.controllerId), eq(nodes.ownerEpoch, owner.epoch));
    const [result] = await this.#db
      .update(nodes)
      .set({ deployCommittedOffset: sql`GREATEST(${nodes.deployCommittedOffset}, ${committedOffset})` })
      .where(and(...where));
    if (result.affectedRows === 0 && owner) {
      const [row] = await this.#db
        .select({ reservation: nodes.reservation, epoch: nodes.ownerEpoch })
        .from(nodes)
        .where(eq(nodes.uuid, nodeUuid));
      if (row && (row.reservation !== owner.controllerId || row.epoch !== owner.epoch))
        throw new StaleOwnerError(nodeUuid, owner, row.reservation, row.epoch);
    }
  }

  async clear(nodeUuid: string): Promise<void> {
    await this.#db.update(nodes).set({ deployImageSha256: null, deployCommittedOffset: 0 }).where(eq(nodes.uuid, nodeUuid));
  }
}
