/**
 * Picks a node for a flavor and claims it. Best fit: among the nodes that
 * satisfy every filter, the smallest (RAM, then CPUs, then disk) first, so big
 * machines stay free for big flavors. The claim is one conditional UPDATE that
 * also takes the node's reservation and moves it to `deploying`: two boots,
 * even on two controllers, can never both get one node.
 */
import { and, asc, eq, gte, isNull, sql } from 'drizzle-orm';
import type { Database } from '../../db/connect.ts';
import { nodes } from '../../db/schema.ts';
import { nextState } from '../conductor/states.ts';
import type { FlavorRecord } from '../flavors/catalog.ts';
import { capabilitiesMatch, FLAVOR_KEYS, requiredCapabilities } from '../flavors/keys.ts';
import { NoValidNodeError } from './errors.ts';

/** How many best-fit candidates one query brings; claims race over them before asking again. */
const WINDOW = 32;
const MAX_ROUNDS = 8;

export interface Claim {
  readonly nodeUuid: string;
  /** The node's row version after the claim. */
  readonly version: number;
}

interface Candidate {
  readonly uuid: string;
  readonly memoryMb: number;
  readonly cpus: number;
  readonly localGb: number;
  readonly properties: Record<string, string>;
}

/** Shuffles nodes of the same size among themselves: concurrent boots then spread over equals instead of all racing for one row. */
function spreadEquals(candidates: readonly Candidate[]): Candidate[] {
  const out: Candidate[] = [];
  let i = 0;
  while (i < candidates.length) {
    const first = candidates[i]!;
    let j = i;
    while (j < candidates.length && candidates[j]!.memoryMb === first.memoryMb && candidates[j]!.cpus === first.cpus && candidates[j]!.localGb === first.localGb) j++;
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

  constructor(db: Database) {
    this.#db = db;
  }

  /** Claims a node for the instance: it is then `deploying`, reserved by `controllerId`, and holds `instanceUuid`. */
  async claim(flavor: FlavorRecord, instanceUuid: string, controllerId: string): Promise<Claim> {
    const arch = flavor.extraSpecs[FLAVOR_KEYS.cpuArch] ?? 'x86_64';
    const resourceClass = flavor.extraSpecs[FLAVOR_KEYS.resourceClass] ?? '';
    const capabilities = requiredCapabilities(flavor.extraSpecs);
    const deploying = nextState('(scheduler)', 'available', 'deploy');
    const free = and(eq(nodes.provisionState, 'available'), eq(nodes.maintenance, false), isNull(nodes.instanceUuid), isNull(nodes.reservation));
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const rows = await this.#db
        .select({ uuid: nodes.uuid, memoryMb: nodes.memoryMb, cpus: nodes.cpus, localGb: nodes.localGb, properties: nodes.properties })
        .from(nodes)
        .where(
          and(
            free,
            eq(nodes.cpuArch, arch),
            gte(nodes.cpus, flavor.cpus),
            gte(nodes.memoryMb, flavor.ramMb),
            gte(nodes.localGb, flavor.diskGb),
            ...(resourceClass !== '' ? [eq(nodes.resourceClass, resourceClass)] : []),
          ),
        )
        .orderBy(asc(nodes.memoryMb), asc(nodes.cpus), asc(nodes.localGb))
        .limit(WINDOW);
      const fits = spreadEquals(rows.map((r) => ({ ...r, properties: r.properties ?? {} }))).filter((c) => capabilitiesMatch(capabilities, c.properties));
      if (fits.length === 0) break;
      for (const candidate of fits) {
        const [result] = await this.#db
          .update(nodes)
          .set({ instanceUuid, provisionState: deploying, targetProvisionState: 'active', reservation: controllerId, lastError: null, version: sql`${nodes.version} + 1`, updatedAt: sql`CURRENT_TIMESTAMP(3)` })
          .where(and(eq(nodes.uuid, candidate.uuid), free));
        if (result.affectedRows === 1) {
          const [row] = await this.#db.select({ version: nodes.version }).from(nodes).where(eq(nodes.uuid, candidate.uuid));
          return { nodeUuid: candidate.uuid, version: row?.version ?? 0 };
        }
      }
      // Every candidate of this window went to other boots meanwhile: look again.
    }
    throw new NoValidNodeError(await this.#explain(flavor, arch, resourceClass, capabilities));
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
    if (fit > 0) parts.push(`${fit} ${capabilities.size > 0 ? 'without the capabilities asked for, or claimed by other boots meanwhile' : 'claimed by other boots meanwhile'}`);
    return `no valid node: ${total} available; ${parts.join('; ')}`;
  }
}
