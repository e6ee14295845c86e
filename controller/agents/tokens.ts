/**
 * Per-operation agent tokens. The conductor issues one when it boots a node
 * into the ramdisk for a deploy, clean or inspection (it rides on the kernel
 * command line), stores only its hash with an expiry, and revokes it when the
 * operation ends, so a token seen on a console or in a DHCP capture is useless
 * afterwards.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { Database } from '../../db/connect.ts';
import { nodes } from '../../db/schema.ts';

export interface AgentTokenStore {
  issue(nodeUuid: string, ttlMs: number): Promise<string>;
  verify(nodeUuid: string, token: string): Promise<boolean>;
  revoke(nodeUuid: string): Promise<void>;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export class MysqlAgentTokens implements AgentTokenStore {
  readonly #db: Database;
  readonly #now: () => number;

  constructor(db: Database, now: () => number = Date.now) {
    this.#db = db;
    this.#now = now;
  }

  async issue(nodeUuid: string, ttlMs: number): Promise<string> {
    const token = `bma_${randomBytes(32).toString('base64url')}`;
    await this.#db
      .update(nodes)
      .set({ agentTokenHash: digest(token).toString('hex'), agentTokenExpiresAt: new Date(this.#now() + ttlMs) })
      .where(eq(nodes.uuid, nodeUuid));
    return token;
  }

  async verify(nodeUuid: string, token: string): Promise<boolean> {
    const rows = await this.#db.select({ hash: nodes.agentTokenHash, expires: nodes.agentTokenExpiresAt }).from(nodes).where(eq(nodes.uuid, nodeUuid)).limit(1);
    const row = rows[0];
    if (!row?.hash || !row.expires || row.expires.getTime() <= this.#now()) return false;
    return timingSafeEqual(Buffer.from(row.hash, 'hex'), digest(token));
  }

  async revoke(nodeUuid: string): Promise<void> {
    await this.#db.update(nodes).set({ agentTokenHash: null, agentTokenExpiresAt: null }).where(eq(nodes.uuid, nodeUuid));
  }
}
