/** The "no valid node" message: why nothing fits, each free node counted once under the first filter it fails. */
import { and, eq, isNull, sql } from 'drizzle-orm';
import { type Database, nodes } from '../../db/index.ts';
import type { FlavorRecord } from '../flavors/index.ts';

export async function explainNoFit(
  db: Database,
  flavor: FlavorRecord,
  arch: string,
  resourceClass: string,
  capabilities: ReadonlyMap<string, string>,
): Promise<string> {
  const rows = await db
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
