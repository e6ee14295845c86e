/**
 * Picks a node for a flavor and claims it. Best fit: among the nodes that
 * satisfy every filter, the smallest (RAM, then CPUs, then disk) first, so big
 * machines stay free for big flavors. Claims are group-committed: those that
 * arrive while a batch is in flight wait for the next one, which takes a node
 * for each of them in one transaction (batch-claim.ts). Every claim is a
 * conditional UPDATE that also takes the node's reservation and moves it to
 * `deploying`: two boots, even on two controllers, can never both get one node.
 */
import { and, asc, eq, gte, sql } from 'drizzle-orm';
import { type Database, nodes, type NodeRow } from '../../db/index.ts';
import { nextState } from '../conductor/index.ts';
import { macsOfNodes, toNode, type NodeRecord } from '../nodes/index.ts';
import { type FlavorRecord, capabilitiesMatch, FLAVOR_KEYS, requiredCapabilities } from '../flavors/index.ts';
import { type Assignment, type BindClaim, claimBatch, claimedFields, FREE } from './batch-claim.ts';
import { NoValidNodeError } from './errors.ts';
import { explainNoFit } from './explain.ts';
import type { ClaimHolder, Transaction } from './types.ts';

/** Runs inside a claim's transaction once the node is ours (e.g. removes the instance row); its error rolls the claim back. */
export type UnbindClaim = (tx: Transaction, nodeUuid: string) => Promise<void>;

/**
 * Claims waiting in this process for one flavor are served together: one
 * window query brings enough best-fit candidates for all of them, and each
 * gets a distinct one, so a boot storm does not send every boot racing for
 * the same few rows (which, with the old per-boot window of 32, also ran out
 * of rounds and answered "no valid node" while nodes were free).
 */
const MAX_BATCH = 256;
/** Candidates per waiting claim in one window: the batch draws from equal best fits, so two controllers' batches seldom pick the same rows. */
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
  claim<T>(flavor: FlavorRecord, instanceUuid: string, holder: ClaimHolder, bind?: BindClaim<T>): Promise<Claim> {
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

  /** One window for the batch, one transaction for its claims. Returns the claims to try again with a fresh window. */
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
    const fits = spreadEquals(
      rows.map((row) => ({
        uuid: row.uuid,
        memoryMb: row.memoryMb,
        cpus: row.cpus,
        localGb: row.localGb,
        properties: row.properties ?? {},
        row,
      })),
    ).filter((c) => capabilitiesMatch(capabilities, c.properties));
    if (fits.length === 0) {
      const noFit = new NoValidNodeError(await explainNoFit(this.#db, flavor, arch, resourceClass, capabilities));
      for (const c of batch) c.reject(noFit);
      return [];
    }
    // Best fits first, each node once; claims beyond the window's fits wait for a fresh window (which says "no valid node" once none is left).
    const paired = batch.slice(0, fits.length).map((c, i) => ({ c, candidate: fits[i]! }));
    const again: PendingClaim[] = batch.slice(fits.length);
    const now = new Date();
    const provisionState = nextState('(scheduler)', 'available', 'deploy');
    const assignments: Assignment[] = paired.map(({ c, candidate }) => ({
      row: candidate.row,
      instanceUuid: c.instanceUuid,
      reservation: typeof c.holder === 'string' ? c.holder : c.holder({ uuid: candidate.uuid, group: candidate.row.group }),
      bind: c.bind,
    }));
    let won: ReadonlySet<string>;
    try {
      won = await claimBatch(this.#db, assignments, provisionState, now);
    } catch {
      // One claim's binding (or a deadlock) must not fail its siblings: each tries on its own, and fails alone.
      won = await this.#claimEach(assignments, provisionState, now, paired);
    }
    const macs = won.size > 0 ? await macsOfNodes(this.#db, [...won]) : new Map<string, string[]>();
    paired.forEach(({ c }, i) => {
      const a = assignments[i]!;
      if (won.has(a.row.uuid)) {
        const fields = claimedFields(a.row, a.instanceUuid, a.reservation, provisionState, now);
        c.resolve({ node: toNode({ ...a.row, ...fields }, macs.get(a.row.uuid) ?? []) });
      } else if (++c.losses >= MAX_LOSSES) {
        c.reject(new NoValidNodeError(`no valid node: ${MAX_LOSSES} candidates went to other boots meanwhile; try again`));
      } else again.push(c);
    });
    return again;
  }

  /** The batch claim failed: each assignment claims in its own transaction; an error rejects only its claim. */
  async #claimEach(
    assignments: readonly Assignment[],
    provisionState: string,
    now: Date,
    paired: readonly { readonly c: PendingClaim }[],
  ): Promise<Set<string>> {
    const won = new Set<string>();
    await Promise.all(
      assignments.map(async (a, i) => {
        try {
          if ((await claimBatch(this.#db, [a], provisionState, now)).has(a.row.uuid)) won.add(a.row.uuid);
        } catch (err) {
          paired[i]!.c.reject(err);
        }
      }),
    );
    return won;
  }

  /**
   * Undoes a claim whose deploy never started (its holder could not be told to run it): the node is free again and
   * `unbind` (deleting the instance row) commits with it. Only while the node is exactly as the claim left it
   * (same version): once its holder has started the deploy, false, and the deploy goes on.
   */
  async unclaim(claim: Claim, unbind: UnbindClaim): Promise<boolean> {
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
}
