/**
 * Picks a node for a flavor and claims it. Best fit: among the nodes that
 * satisfy every filter, the smallest (RAM, then CPUs, then disk) first, so big
 * machines stay free for big flavors. The claim is one conditional UPDATE that
 * also takes the node's reservation and moves it to `deploying`: two boots,
 * even on two controllers, can never both get one node.
 */
import { and, asc, eq, gte, isNull, sql } from 'drizzle-orm';
import { type Database, nodes, type NodeRow } from '../../db/index.ts';

/** A transaction handle: what a claim's `bind` step writes with, so it commits (or rolls back) with the claim. */
export type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];

/** Runs inside the claim's transaction once the node is ours (e.g. inserts the instance row already placed on it); its error rolls the claim back. */
export type BindClaim = (tx: Transaction, nodeUuid: string) => Promise<void>;

/** Whose reservation a claimed node gets: one controller, or per node (the node's owner on the hash ring, who then runs its deploy). */
export type ClaimHolder = string | ((node: { readonly uuid: string; readonly group: string }) => string);
import { nextState } from '../conductor/index.ts';
import { macsOfNodes, toNode, type NodeRecord } from '../nodes/index.ts';
import { type FlavorRecord, capabilitiesMatch, FLAVOR_KEYS, requiredCapabilities } from '../flavors/index.ts';
import { NoValidNodeError } from './errors.ts';

/**
 * Claims waiting in this process for one flavor are served together: one
 * window query brings enough best-fit candidates for all of them, and each
 * tries distinct ones, so a boot storm does not send every boot racing for
 * the same few rows (which, with the old per-boot window of 32, also ran out
 * of rounds and answered "no valid node" while nodes were free).
 */
const MAX_BATCH = 256;
/** Candidates per waiting claim in one window: slack for rows another controller takes from the same window meanwhile. */
const CANDIDATES_PER_CLAIM = 4;
/** Extra candidates in every window, however few claims wait. */
const SPARE = 32;
/** How many candidates one claim may lose to other controllers before it gives up. */
const MAX_LOSSES = 32;

export interface Claim {
  /** The node as the claim left it (the window's row, unchanged until the claim, plus the claim's own writes): no re-read needed. */
  readonly node: NodeRecord;
}

interface Candidate {
  readonly uuid: string;
  readonly memoryMb: number;
  readonly cpus: number;
  readonly localGb: number;
  readonly properties: Record<string, string>;
  readonly row: NodeRow;
  readonly macs: readonly string[];
}

interface PendingClaim {
  readonly instanceUuid: string;
  readonly holder: ClaimHolder;
  readonly bind: BindClaim | undefined;
  losses: number;
  readonly resolve: (claim: Claim) => void;
  readonly reject: (err: unknown) => void;
}

interface FlavorQueue {
  readonly flavor: FlavorRecord;
  readonly waiting: PendingClaim[];
}

/** Shuffles nodes of the same size among themselves: concurrent boots then spread over equals instead of all racing for one row. */
function spreadEquals(candidates: readonly Candidate[]): Candidate[] {
  const out: Candidate[] = [];
  let i = 0;
  while (i < candidates.length) {
    const first = candidates[i]!;
    let j = i;
    while (
      j < candidates.length &&
      candidates[j]!.memoryMb === first.memoryMb &&
      candidates[j]!.cpus === first.cpus &&
      candidates[j]!.localGb === first.localGb
    )
      j++;
    const group = candidates.slice(i, j);
    for (let k = group.length - 1; k > 0; k--) {
      const r = Math.floor(Math.random() * (k + 1));
      [group[k], group[r]] = [group[r]!, group[k]!];
    }
    out.push(...group);
    i = j;
  }
  return out;
}

/** A node no one has: available, not in maintenance, no instance, no task. */
const FREE = and(
  eq(nodes.provisionState, 'available'),
  eq(nodes.maintenance, false),
  isNull(nodes.instanceUuid),
  isNull(nodes.reservation),
);

export class Scheduler {
  readonly #db: Database;
  /** Claims waiting, per flavor (and its keys as they were asked for), while a round for that flavor runs. */
  readonly #queues = new Map<string, FlavorQueue>();

  constructor(db: Database) {
    this.#db = db;
  }

  /**
   * Claims a node for the instance: it is then `deploying`, reserved by `holder`, and holds `instanceUuid`.
   * With `bind`, the claim and what `bind` writes are one transaction: one commit, and never one without the other.
   */
  claim(flavor: FlavorRecord, instanceUuid: string, holder: ClaimHolder, bind?: BindClaim): Promise<Claim> {
    const key = `${flavor.uuid}/${flavor.cpus}/${flavor.ramMb}/${flavor.diskGb}/${JSON.stringify(flavor.extraSpecs)}`;
    return new Promise<Claim>((resolve, reject) => {
      const queue = this.#queues.get(key);
      const pending = { instanceUuid, holder, bind, losses: 0, resolve, reject };
      if (queue) {
        queue.waiting.push(pending);
        return;
      }
      const created = { flavor, waiting: [pending] };
      this.#queues.set(key, created);
      void this.#drain(key, created);
    });
  }

  async #drain(key: string, queue: FlavorQueue): Promise<void> {
    try {
      while (queue.waiting.length > 0) {
        const batch = queue.waiting.splice(0, MAX_BATCH);
        try {
          queue.waiting.unshift(...(await this.#round(queue.flavor, batch)));
        } catch (err) {
          // A settled claim ignores this; the others fail with the database's error.
          for (const c of batch) c.reject(err);
        }
      }
    } finally {
      this.#queues.delete(key);
    }
  }

  /** One window for the batch; each claim tries distinct candidates from it. Returns the claims to try again with a fresh window. */
  async #round(flavor: FlavorRecord, batch: readonly PendingClaim[]): Promise<PendingClaim[]> {
    const arch = flavor.extraSpecs[FLAVOR_KEYS.cpuArch] ?? 'x86_64';
    const resourceClass = flavor.extraSpecs[FLAVOR_KEYS.resourceClass] ?? '';
    const capabilities = requiredCapabilities(flavor.extraSpecs);
    const rows = await this.#db
      .select()
      .from(nodes)
      .where(
        and(
          FREE,
          eq(nodes.cpuArch, arch),
          gte(nodes.cpus, flavor.cpus),
          gte(nodes.memoryMb, flavor.ramMb),
          gte(nodes.localGb, flavor.diskGb),
          ...(resourceClass !== '' ? [eq(nodes.resourceClass, resourceClass)] : []),
        ),
      )
      .orderBy(asc(nodes.memoryMb), asc(nodes.cpus), asc(nodes.localGb))
      .limit(batch.length * CANDIDATES_PER_CLAIM + SPARE);
    const macs = await macsOfNodes(
      this.#db,
      rows.map((r) => r.uuid),
    );
    const fits = spreadEquals(
      rows.map((row) => ({
        uuid: row.uuid,
        memoryMb: row.memoryMb,
        cpus: row.cpus,
        localGb: row.localGb,
        properties: row.properties ?? {},
        row,
        macs: macs.get(row.uuid) ?? [],
      })),
    ).filter((c) => capabilitiesMatch(capabilities, c.properties));
    if (fits.length === 0) {
      const noFit = new NoValidNodeError(await this.#explain(flavor, arch, resourceClass, capabilities));
      for (const c of batch) c.reject(noFit);
      return [];
    }
    let next = 0;
    const again: PendingClaim[] = [];
    await Promise.all(
      batch.map(async (c) => {
        // Each claim settles on its own: one failing UPDATE must not fail a sibling that has already won its node.
        try {
          while (next < fits.length) {
            const candidate = fits[next++]!;
            const claim = await this.#tryClaim(candidate, c);
            if (claim) return c.resolve(claim);
            if (++c.losses >= MAX_LOSSES) {
              return c.reject(new NoValidNodeError(`no valid node: ${MAX_LOSSES} candidates went to other boots meanwhile; try again`));
            }
          }
          // The window ran out before this claim won (its siblings took the rest): a fresh window decides.
          again.push(c);
        } catch (err) {
          c.reject(err);
        }
      }),
    );
    return again;
  }

  /**
   * The claim itself: one conditional UPDATE, so two boots (on any controllers) never both get the node.
   * It also requires the window's row version, so a won claim knows the whole row without reading it
   * again (a node changed since the window is simply another lost candidate). A lost race changes
   * nothing, so its (empty) transaction commits without a log flush.
   */
  async #tryClaim(candidate: Candidate, c: PendingClaim): Promise<Claim | null> {
    const set = {
      instanceUuid: c.instanceUuid,
      provisionState: nextState('(scheduler)', 'available', 'deploy'),
      targetProvisionState: 'active',
      reservation: typeof c.holder === 'string' ? c.holder : c.holder({ uuid: candidate.uuid, group: candidate.row.group }),
      // The version check below makes this bump atomic with the claim: the deploy's writes carry it.
      ownerEpoch: candidate.row.ownerEpoch + 1,
      lastError: null,
      version: candidate.row.version + 1,
      updatedAt: new Date(),
    };
    const claimIn = async (db: Database | Transaction): Promise<boolean> => {
      const [result] = await db
        .update(nodes)
        .set(set)
        .where(and(eq(nodes.uuid, candidate.uuid), eq(nodes.version, candidate.row.version), FREE));
      return result.affectedRows === 1;
    };
    const bind = c.bind;
    const won = bind
      ? await this.#db.transaction(async (tx) => {
          if (!(await claimIn(tx))) return false;
          await bind(tx, candidate.uuid);
          return true;
        })
      : await claimIn(this.#db);
    return won ? { node: toNode({ ...candidate.row, ...set }, candidate.macs) } : null;
  }

  /**
   * Undoes a claim whose deploy never started (its holder could not be told to run it): the node is free again and
   * `unbind` (deleting the instance row) commits with it. Only while the node is exactly as the claim left it
   * (same version): once its holder has started the deploy, false, and the deploy goes on.
   */
  async unclaim(claim: Claim, unbind: BindClaim): Promise<boolean> {
    const { node } = claim;
    return this.#db.transaction(async (tx) => {
      const [result] = await tx
        .update(nodes)
        .set({
          instanceUuid: null,
          provisionState: 'available',
          targetProvisionState: null,
          reservation: null,
          version: node.version + 1,
          updatedAt: new Date(),
        })
        .where(
          and(
            eq(nodes.uuid, node.uuid),
            eq(nodes.version, node.version),
            eq(nodes.provisionState, node.provisionState),
            sql`${nodes.reservation} <=> ${node.reservation}`,
            sql`${nodes.instanceUuid} <=> ${node.instanceUuid}`,
          ),
        );
      if (result.affectedRows !== 1) return false;
      await unbind(tx, node.uuid);
      return true;
    });
  }

  /** Why nothing fits: each free node counted once, under the first filter it fails. */
  async #explain(flavor: FlavorRecord, arch: string, resourceClass: string, capabilities: ReadonlyMap<string, string>): Promise<string> {
    const rows = await this.#db
      .select({
        why: sql<string>`CASE
          WHEN ${nodes.maintenance} THEN 'in maintenance'
          WHEN ${nodes.reservation} IS NOT NULL THEN 'busy with another task'
          WHEN ${nodes.cpuArch} <> ${arch} THEN 'wrong arch'
          WHEN ${nodes.cpus} < ${flavor.cpus} THEN 'too few CPUs'
          WHEN ${nodes.memoryMb} < ${flavor.ramMb} THEN 'too little RAM'
          WHEN ${nodes.localGb} < ${flavor.diskGb} THEN 'too little disk'
          WHEN ${resourceClass} <> '' AND ${nodes.resourceClass} <> ${resourceClass} THEN 'wrong resource class'
          ELSE 'fit' END`.as('why'),
        n: sql<number>`COUNT(*)`.as('n'),
      })
      .from(nodes)
      .where(and(eq(nodes.provisionState, 'available'), isNull(nodes.instanceUuid)))
      .groupBy(sql`why`);
    const total = rows.reduce((sum, r) => sum + Number(r.n), 0);
    if (total === 0) return 'no valid node: 0 available';
    const parts = rows
      .filter((r) => r.why !== 'fit')
      .sort((a, b) => Number(b.n) - Number(a.n))
      .map((r) => `${Number(r.n)} ${r.why}`);
    const fit = Number(rows.find((r) => r.why === 'fit')?.n ?? 0);
    // Nodes that pass the SQL filters but not the capabilities (or were claimed by concurrent boots meanwhile).
    if (fit > 0)
      parts.push(
        `${fit} ${capabilities.size > 0 ? 'without the capabilities asked for, or claimed by other boots meanwhile' : 'claimed by other boots meanwhile'}`,
      );
    return `no valid node: ${total} available; ${parts.join('; ')}`;
  }
}
