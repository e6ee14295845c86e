/**
 * Where a deploy's image write stands, kept in the node's row: which image
 * is being written and the last offset the agent committed. A stream that
 * breaks, or a controller that takes the node over after its owner died,
 * resumes from there; a different image starts from zero.
 */
import { and, eq, sql } from 'drizzle-orm';
import { type Database, nodes } from '../../db/index.ts';

export interface DeployCheckpoints {
  /** Starts (or continues) writing `imageSha256` to the node; resolves to the offset to resume from. */
  begin(nodeUuid: string, imageSha256: string): Promise<number>;
  /** Records a committed offset; never moves backwards, and is ignored once another image is being written. */
  record(nodeUuid: string, imageSha256: string, committedOffset: number): Promise<void>;
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

  async record(nodeUuid: string, imageSha256: string, committedOffset: number): Promise<void> {
    await this.#db
      .update(nodes)
      .set({ deployCommittedOffset: sql`GREATEST(${nodes.deployCommittedOffset}, ${committedOffset})` })
      .where(and(eq(nodes.uuid, nodeUuid), eq(nodes.deployImageSha256, imageSha256)));
  }

  async clear(nodeUuid: string): Promise<void> {
    await this.#db.update(nodes).set({ deployImageSha256: null, deployCommittedOffset: 0 }).where(eq(nodes.uuid, nodeUuid));
  }
}
