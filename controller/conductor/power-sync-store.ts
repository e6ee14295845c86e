/** PowerSyncStore over MySQL: the nodes of this controller's groups that have BMC credentials. */
import { and, eq, inArray, isNotNull, isNull, ne, notInArray, sql } from 'drizzle-orm';
import { type Database, nodes } from '../../db/index.ts';
import { SecretDecryptError, type SecretBox } from '../secrets/index.ts';
import type { PowerState } from '../drivers/power/index.ts';
import type { PowerSyncStore, SweepEntry } from './power-sync.ts';

/** Provision states the sync loop leaves alone: credentials not (yet) verified. */
export const SYNC_EXCLUDED_STATES: readonly string[] = ['enroll', 'verifying'];

export class MysqlPowerSyncStore implements PowerSyncStore {
  readonly #db: Database;
  readonly #secrets: SecretBox;
  readonly #groups: readonly string[];

  constructor(db: Database, secrets: SecretBox, groups: readonly string[]) {
    this.#db = db;
    this.#secrets = secrets;
    this.#groups = groups;
  }

  async candidates(mine: (node: { readonly uuid: string; readonly group: string }) => boolean = () => true): Promise<SweepEntry[]> {
    const rows = await this.#db
      .select({
        uuid: nodes.uuid,
        group: nodes.group,
        provisionState: nodes.provisionState,
        powerState: nodes.powerState,
        maintenance: nodes.maintenance,
        failures: nodes.powerSyncFailures,
        driver: nodes.powerDriver,
        address: nodes.pmAddress,
        port: nodes.pmPort,
        username: nodes.pmUser,
        sealed: nodes.pmPasswordEnc,
        lastError: nodes.lastError,
      })
      .from(nodes)
      .where(
        and(
          inArray(nodes.group, [...this.#groups]),
          // As in Ironic: a node whose BMC credentials were never verified is not polled
          // (an operator may have typed a wrong address; we would hammer a stranger's host).
          notInArray(nodes.provisionState, [...SYNC_EXCLUDED_STATES]),
          ne(nodes.pmAddress, ''),
          isNotNull(nodes.pmPasswordEnc),
          isNull(nodes.reservation),
        ),
      );
    const out: SweepEntry[] = [];
    for (const r of rows) {
      // Another member's node (by the ring) is that member's to poll; its password is not even opened here.
      if (!r.sealed || !mine(r)) continue;
      let password: string;
      try {
        password = this.#secrets.decrypt(r.sealed, r.uuid);
      } catch (err) {
        // One row that cannot be opened must not take the others' sweep with it.
        const passwordError = err instanceof SecretDecryptError ? err.reason : err instanceof Error ? err.message : String(err);
        out.push({ uuid: r.uuid, provisionState: r.provisionState, failures: r.failures, lastError: r.lastError, passwordError });
        continue;
      }
      out.push({
        uuid: r.uuid,
        provisionState: r.provisionState,
        powerState: r.powerState,
        maintenance: r.maintenance,
        failures: r.failures,
        target: { nodeUuid: r.uuid, driver: r.driver, address: r.address, port: r.port, username: r.username, password },
      });
    }
    return out;
  }

  async recordPower(uuid: string, state: PowerState): Promise<void> {
    await this.#db
      .update(nodes)
      .set({ powerState: state, version: sql`${nodes.version} + 1`, updatedAt: sql`CURRENT_TIMESTAMP(3)` })
      .where(eq(nodes.uuid, uuid));
  }

  async recordFailures(uuid: string, failures: number, lastError: string | null): Promise<void> {
    await this.#db
      .update(nodes)
      .set({ powerSyncFailures: failures, ...(lastError !== null ? { lastError } : {}) })
      .where(eq(nodes.uuid, uuid));
  }
}
