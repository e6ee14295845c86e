/**
 * Per-boot agent tokens. The conductor arms one before it powers a node into
 * the ramdisk for a deploy, clean or inspection. Its hash checks the agent's
 * calls; a copy sealed with the cluster's secret key (bound to the node) lets
 * whichever controller drives the node talk to the agent, a takeover
 * included. The boot script carries it once: the first fetch after arming
 * delivers it and later fetches get none, so a stranger who asks for a
 * deploying node's script cannot mint a token or revoke the real agent's.
 * Revoked when the operation ends.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { and, eq, gt, isNotNull, sql } from 'drizzle-orm';
import { type Database, nodes } from '../../db/index.ts';
import type { SecretBox } from '../secrets/index.ts';

export interface AgentTokenStore {
  /** A new token for the node's next boot (the previous one stops working); not yet delivered. */
  issue(nodeUuid: string, ttlMs: number): Promise<string>;
  /** The armed token, once: null when none is armed, it expired, or a script already carried it. */
  deliver(nodeUuid: string): Promise<string | null>;
  /** The armed token, for the controller's own calls to the agent; null when none is valid. */
  reveal(nodeUuid: string): Promise<string | null>;
  verify(nodeUuid: string, token: string): Promise<boolean>;
  revoke(nodeUuid: string): Promise<void>;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Bound to the node and to its purpose, so a sealed BMC password can never pass for a token or back. */
const boundTo = (nodeUuid: string): string => `agent-token:${nodeUuid}`;

export class MysqlAgentTokens implements AgentTokenStore {
  readonly #db: Database;
  readonly #secrets: SecretBox | null;
  readonly #now: () => number;

  /** Without a SecretBox tokens are only verified (what an API-only process needs). */
  constructor(db: Database, secrets: SecretBox | null = null, now: () => number = Date.now) {
    this.#db = db;
    this.#secrets = secrets;
    this.#now = now;
  }

  async issue(nodeUuid: string, ttlMs: number): Promise<string> {
    const token = `bma_${randomBytes(32).toString('base64url')}`;
    await this.#db
      .update(nodes)
      .set({
        agentTokenHash: digest(token).toString('hex'),
        agentTokenExpiresAt: new Date(this.#now() + ttlMs),
        agentTokenSealed: this.#secrets ? this.#secrets.encrypt(token, boundTo(nodeUuid)) : null,
        agentTokenDelivered: false,
        // Whatever agent called before belongs to an earlier boot: only this boot's agent may fill these in.
        agentAddress: null,
        agentSeenAt: null,
      })
      .where(eq(nodes.uuid, nodeUuid));
    return token;
  }

  async deliver(nodeUuid: string): Promise<string | null> {
    // One conditional UPDATE: of two fetches racing, exactly one carries the token.
    const [result] = await this.#db
      .update(nodes)
      .set({ agentTokenDelivered: true })
      .where(
        and(
          eq(nodes.uuid, nodeUuid),
          eq(nodes.agentTokenDelivered, false),
          isNotNull(nodes.agentTokenSealed),
          gt(nodes.agentTokenExpiresAt, sql`${new Date(this.#now())}`),
        ),
      );
    if (result.affectedRows !== 1) return null;
    return this.reveal(nodeUuid);
  }

  async reveal(nodeUuid: string): Promise<string | null> {
    if (!this.#secrets) return null;
    const [row] = await this.#db
      .select({ sealed: nodes.agentTokenSealed, expires: nodes.agentTokenExpiresAt })
      .from(nodes)
      .where(eq(nodes.uuid, nodeUuid))
      .limit(1);
    if (!row?.sealed || !row.expires || row.expires.getTime() <= this.#now()) return null;
    return this.#secrets.decrypt(row.sealed, boundTo(nodeUuid));
  }

  async verify(nodeUuid: string, token: string): Promise<boolean> {
    const rows = await this.#db
      .select({ hash: nodes.agentTokenHash, expires: nodes.agentTokenExpiresAt })
      .from(nodes)
      .where(eq(nodes.uuid, nodeUuid))
      .limit(1);
    const row = rows[0];
    if (!row?.hash || !row.expires || row.expires.getTime() <= this.#now()) return false;
    return timingSafeEqual(Buffer.from(row.hash, 'hex'), digest(token));
  }

  async revoke(nodeUuid: string): Promise<void> {
    await this.#db
      .update(nodes)
      .set({ agentTokenHash: null, agentTokenExpiresAt: null, agentTokenSealed: null, agentTokenDelivered: false })
      .where(eq(nodes.uuid, nodeUuid));
  }
}
