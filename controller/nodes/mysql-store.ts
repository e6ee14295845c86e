/**
 * NodeStore over MySQL/MariaDB with drizzle-orm. Uniqueness (MACs, names) is
 * enforced by the database's unique keys, not by read-then-write checks, so
 * two controllers enrolling at once cannot both win.
 */
import { and, asc, eq, gt, inArray, isNotNull, isNull, notInArray, sql, type SQL } from 'drizzle-orm';
import { type Database, nodes, ports, type NodeRow, type PortRow } from '../../db/index.ts';
import { AlreadyExistsError, BmError, ConflictError, NotFoundError, TooManyPortsError } from '../errors.ts';
import { StaleOwnerError, type NodeOwner } from './owner.ts';
import type { NewNode, NodeChanges, NodeStore, StateFields } from './store.ts';
import type { NodeFilter, NodeRecord, Page, PortRecord } from './types.ts';
import { isUuid } from './uuid.ts';

interface MysqlError {
  readonly code?: string;
  readonly errno?: number;
  readonly sqlMessage?: string;
}

/** drizzle wraps driver errors; the mysql2 error (with its code) is the cause. */
function mysqlError(err: unknown): MysqlError | null {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (typeof (e as MysqlError).code === 'string' && (e as MysqlError).code!.startsWith('ER_')) return e as MysqlError;
  }
  return null;
}

function duplicateKey(err: unknown): string | null {
  const e = mysqlError(err);
  if (e?.code !== 'ER_DUP_ENTRY') return null;
  return /for key '(?:[^.']*\.)?([^']+)'/.exec(e.sqlMessage ?? '')?.[1] ?? 'unknown';
}

export function toNode(row: NodeRow, macs: readonly string[]): NodeRecord {
  return {
    uuid: row.uuid,
    name: row.name,
    group: row.group,
    cpus: row.cpus,
    memoryMb: row.memoryMb,
    localGb: row.localGb,
    cpuArch: row.cpuArch,
    pmAddress: row.pmAddress,
    pmPort: row.pmPort,
    pmUser: row.pmUser,
    pmPasswordSet: row.pmPasswordEnc !== null && row.pmPasswordEnc.length > 0,
    powerDriver: row.powerDriver,
    provisionState: row.provisionState,
    powerState: row.powerState,
    maintenance: row.maintenance,
    maintenanceReason: row.maintenanceReason,
    instanceUuid: row.instanceUuid,
    lastError: row.lastError,
    properties: row.properties ?? {},
    reservation: row.reservation,
    ownerEpoch: row.ownerEpoch,
    agentAddress: row.agentAddress,
    agentSeenAt: row.agentSeenAt,
    powerSyncFailures: row.powerSyncFailures,
    resourceClass: row.resourceClass,
    version: row.version,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    macs,
  };
}

function toPort(row: PortRow): PortRecord {
  return { uuid: row.uuid, nodeUuid: row.nodeUuid, mac: row.address, createdAt: row.createdAt };
}

/** The MACs of these nodes' ports, in port order, in one query (the store and the scheduler's window both need them). */
export async function macsOfNodes(db: Database, uuids: readonly string[]): Promise<Map<string, string[]>> {
  const byNode = new Map<string, string[]>();
  if (uuids.length === 0) return byNode;
  const rows = await db
    .select({ nodeUuid: ports.nodeUuid, address: ports.address })
    .from(ports)
    .where(inArray(ports.nodeUuid, [...uuids]))
    .orderBy(asc(ports.createdAt), asc(ports.uuid));
  for (const r of rows) {
    const list = byNode.get(r.nodeUuid);
    if (list) list.push(r.address);
    else byNode.set(r.nodeUuid, [r.address]);
  }
  return byNode;
}

/** A transition's UPDATE for one set of fields written (a handful in all), built once: placeholders for every value. */
function prepareTransition(db: Database, written: readonly (keyof StateFields)[]) {
  const value = (name: string): SQL => sql`${sql.placeholder(name)}`;
  const set: Record<string, SQL> = {};
  for (const key of written) set[key] = value(key);
  return db
    .update(nodes)
    .set({ ...set, provisionState: value('to'), version: value('nextVersion'), updatedAt: value('updatedAt') })
    .where(
      and(
        eq(nodes.uuid, sql.placeholder('uuid')),
        eq(nodes.provisionState, sql.placeholder('from')),
        eq(nodes.version, sql.placeholder('version')),
        eq(nodes.reservation, sql.placeholder('holder')),
        eq(nodes.ownerEpoch, sql.placeholder('epoch')),
      ),
    )
    .prepare();
}

export class MysqlNodeStore implements NodeStore {
  readonly #db: Database;
  /**
   * The node and its ports in one round trip, the SQL built once: every task step and forwarded action reads a node,
   * and a boot storm's controllers spent more CPU building these statements than MariaDB spent running them.
   */
  readonly #byUuid;
  readonly #byName;
  readonly #sealed;
  readonly #transitions = new Map<string, ReturnType<typeof prepareTransition>>();

  constructor(db: Database) {
    this.#db = db;
    const withPorts = (key: typeof nodes.uuid | typeof nodes.name) =>
      db
        .select({ row: nodes, mac: ports.address })
        .from(nodes)
        .leftJoin(ports, eq(ports.nodeUuid, nodes.uuid))
        .where(eq(key, sql.placeholder('id')))
        .orderBy(asc(ports.createdAt), asc(ports.uuid))
        .prepare();
    this.#byUuid = withPorts(nodes.uuid);
    this.#byName = withPorts(nodes.name);
    this.#sealed = db
      .select({ sealed: nodes.pmPasswordEnc })
      .from(nodes)
      .where(eq(nodes.uuid, sql.placeholder('uuid')))
      .prepare();
  }

  #macsOf(uuids: readonly string[]): Promise<Map<string, string[]>> {
    return macsOfNodes(this.#db, uuids);
  }

  async #conflictForMac(mac: string): Promise<never> {
    const owner = await this.#db
      .select({ nodeUuid: ports.nodeUuid, name: nodes.name })
      .from(ports)
      .innerJoin(nodes, eq(nodes.uuid, ports.nodeUuid))
      .where(eq(ports.address, mac))
      .limit(1);
    const o = owner[0];
    const who = o ? `node ${o.nodeUuid}${o.name ? ` (${o.name})` : ''}` : 'another node';
    throw new AlreadyExistsError(`MAC ${mac} already belongs to ${who}; a MAC can belong to one port only`, { mac, node: o?.nodeUuid });
  }

  async createNode(node: NewNode, nodePorts: readonly { uuid: string; mac: string }[]): Promise<NodeRecord> {
    // Timestamps are set here (ms precision, as the columns keep) so the new
    // record can be returned without reading it back: enrollment at fleet
    // scale is bound by database round trips.
    const now = new Date(Math.floor(Date.now()));
    const row: NodeRow = {
      ...node,
      properties: { ...node.properties },
      provisionState: 'enroll',
      targetProvisionState: null,
      powerState: 'unknown',
      targetPowerState: null,
      maintenance: false,
      maintenanceReason: null,
      instanceUuid: null,
      lastError: null,
      reservation: null,
      ownerEpoch: 0,
      agentAddress: null,
      agentSeenAt: null,
      agentTokenHash: null,
      agentTokenExpiresAt: null,
      agentTokenSealed: null,
      agentTokenDelivered: false,
      resourceClass: node.resourceClass ?? '',
      powerSyncFailures: 0,
      deployImageSha256: null,
      deployCommittedOffset: 0,
      version: 1,
      createdAt: now,
      updatedAt: now,
    };
    try {
      await this.#db.transaction(async (tx) => {
        await tx.insert(nodes).values(row);
        if (nodePorts.length > 0)
          await tx.insert(ports).values(nodePorts.map((p) => ({ uuid: p.uuid, nodeUuid: node.uuid, address: p.mac, createdAt: now })));
      });
    } catch (err) {
      const key = duplicateKey(err);
      if (key === 'ports_address_uq') {
        const taken = /Duplicate entry '([^']+)'/.exec(mysqlError(err)?.sqlMessage ?? '')?.[1] ?? nodePorts[0]?.mac ?? '';
        return this.#conflictForMac(taken);
      }
      if (key === 'nodes_name_uq') throw new AlreadyExistsError(`a node named ${node.name} already exists`, { name: node.name ?? '' });
      throw err;
    }
    return toNode(
      row,
      nodePorts.map((p) => p.mac),
    );
  }

  async findNode(id: string): Promise<NodeRecord | null> {
    const rows = await (isUuid(id) ? this.#byUuid : this.#byName).execute({ id });
    const first = rows[0];
    if (!first) return null;
    return toNode(
      first.row,
      rows.flatMap((r) => (r.mac === null ? [] : [r.mac])),
    );
  }

  async listNodes(filter: NodeFilter, limit: number, marker: string | null): Promise<Page<NodeRecord>> {
    const where: SQL[] = [];
    if (marker) where.push(gt(nodes.uuid, marker));
    if (filter.provisionState) where.push(eq(nodes.provisionState, filter.provisionState));
    if (filter.group) where.push(eq(nodes.group, filter.group));
    if (filter.maintenance !== undefined) where.push(eq(nodes.maintenance, filter.maintenance));
    if (filter.associated === true) where.push(isNotNull(nodes.instanceUuid));
    else if (filter.associated === false) where.push(isNull(nodes.instanceUuid));
    else if (typeof filter.associated === 'string') where.push(eq(nodes.instanceUuid, filter.associated));
    // One extra row tells whether another page exists without a COUNT(*).
    const rows = await this.#db
      .select()
      .from(nodes)
      .where(where.length > 0 ? and(...where) : undefined)
      .orderBy(asc(nodes.uuid))
      .limit(limit + 1);
    const page = rows.slice(0, limit);
    const macs = await this.#macsOf(page.map((r) => r.uuid));
    return {
      items: page.map((r) => toNode(r, macs.get(r.uuid) ?? [])),
      nextMarker: rows.length > limit ? (page[page.length - 1]?.uuid ?? null) : null,
    };
  }

  async updateNode(uuid: string, changes: NodeChanges, expectedVersion: number | null): Promise<NodeRecord> {
    const set: Partial<typeof nodes.$inferInsert> = { ...changes, properties: changes.properties ? { ...changes.properties } : undefined };
    for (const key of Object.keys(set) as (keyof typeof set)[]) if (set[key] === undefined) delete set[key];
    const where = expectedVersion !== null ? and(eq(nodes.uuid, uuid), eq(nodes.version, expectedVersion)) : eq(nodes.uuid, uuid);
    let affected: number;
    try {
      const [result] = await this.#db
        .update(nodes)
        .set({ ...set, version: sql`${nodes.version} + 1`, updatedAt: sql`CURRENT_TIMESTAMP(3)` })
        .where(where);
      affected = result.affectedRows;
    } catch (err) {
      if (duplicateKey(err) === 'nodes_name_uq')
        throw new AlreadyExistsError(`a node named ${changes.name} already exists`, { name: changes.name ?? '' });
      throw err;
    }
    const current = await this.findNode(uuid);
    if (!current) throw new NotFoundError('node', uuid);
    if (affected === 0) {
      throw new ConflictError(
        `node ${uuid} was changed meanwhile (version ${current.version}, expected ${expectedVersion}); reload and retry`,
        { node: uuid },
      );
    }
    return current;
  }

  async deleteNode(uuid: string, refusedStates: readonly string[]): Promise<NodeRecord> {
    const before = await this.findNode(uuid);
    if (!before) throw new NotFoundError('node', uuid);
    // The state and reservation are re-checked in the DELETE itself: a deploy
    // that starts between the read above and this statement keeps its node.
    const [result] = await this.#db
      .delete(nodes)
      .where(and(eq(nodes.uuid, uuid), notInArray(nodes.provisionState, [...refusedStates]), isNull(nodes.reservation)));
    if (result.affectedRows === 1) return before;
    const now = await this.findNode(uuid);
    if (!now) throw new NotFoundError('node', uuid);
    if (refusedStates.includes(now.provisionState)) {
      throw new BmError('failed-precondition', `node ${uuid} is ${now.provisionState}; undeploy it before deleting`, {
        node: uuid,
        state: now.provisionState,
      });
    }
    throw new ConflictError(`node ${uuid} is locked by controller ${now.reservation}; retry when its current task ends`, { node: uuid });
  }

  async createPort(port: { uuid: string; nodeUuid: string; mac: string }, maxPorts?: number): Promise<PortRecord> {
    try {
      await this.#db.transaction(async (tx) => {
        if (maxPorts !== undefined) {
          // The node's row lock serialises port adds to one node, so two racing adds cannot both see room for one more.
          const locked = await tx.select({ uuid: nodes.uuid }).from(nodes).where(eq(nodes.uuid, port.nodeUuid)).for('update');
          if (locked.length === 0) throw new NotFoundError('node', port.nodeUuid);
          const [count] = await tx.select({ n: sql<number>`COUNT(*)` }).from(ports).where(eq(ports.nodeUuid, port.nodeUuid));
          if (Number(count?.n ?? 0) >= maxPorts) throw new TooManyPortsError(port.nodeUuid, maxPorts);
        }
        await tx.insert(ports).values({ uuid: port.uuid, nodeUuid: port.nodeUuid, address: port.mac });
      });
    } catch (err) {
      if (duplicateKey(err) === 'ports_address_uq') return this.#conflictForMac(port.mac);
      if (mysqlError(err)?.code === 'ER_NO_REFERENCED_ROW_2') throw new NotFoundError('node', port.nodeUuid);
      throw err;
    }
    const created = await this.findPort(port.uuid);
    if (!created) throw new BmError('internal', `port ${port.uuid} vanished right after it was created`);
    return created;
  }

  async findPort(id: string): Promise<PortRecord | null> {
    const rows = await this.#db
      .select()
      .from(ports)
      .where(isUuid(id) ? eq(ports.uuid, id) : eq(ports.address, id))
      .limit(1);
    return rows[0] ? toPort(rows[0]) : null;
  }

  async findNodeByMacs(macs: readonly string[]): Promise<NodeRecord | null> {
    if (macs.length === 0) return null;
    const rows = await this.#db
      .select({ nodeUuid: ports.nodeUuid })
      .from(ports)
      .where(inArray(ports.address, [...macs]))
      .limit(1);
    return rows[0] ? this.findNode(rows[0].nodeUuid) : null;
  }

  async listPorts(nodeUuid: string | null, limit: number, marker: string | null): Promise<Page<PortRecord>> {
    const where: SQL[] = [];
    if (nodeUuid) where.push(eq(ports.nodeUuid, nodeUuid));
    if (marker) where.push(gt(ports.uuid, marker));
    const rows = await this.#db
      .select()
      .from(ports)
      .where(where.length > 0 ? and(...where) : undefined)
      .orderBy(asc(ports.uuid))
      .limit(limit + 1);
    const page = rows.slice(0, limit);
    return { items: page.map(toPort), nextMarker: rows.length > limit ? (page[page.length - 1]?.uuid ?? null) : null };
  }

  async deletePort(uuid: string): Promise<void> {
    const [result] = await this.#db.delete(ports).where(eq(ports.uuid, uuid));
    if (result.affectedRows === 0) throw new NotFoundError('port', uuid);
  }

  async countNodes(): Promise<number> {
    const rows = await this.#db.select({ n: sql<number>`COUNT(*)` }).from(nodes);
    return Number(rows[0]?.n ?? 0);
  }

  async reserve(uuid: string, controllerId: string): Promise<number | null> {
    // LAST_INSERT_ID(expr) hands the bumped epoch back in the same statement: no read that a breaker could slip before.
    const [result] = await this.#db
      .update(nodes)
      .set({ reservation: controllerId, ownerEpoch: sql`LAST_INSERT_ID(${nodes.ownerEpoch} + 1)` })
      .where(and(eq(nodes.uuid, uuid), isNull(nodes.reservation)));
    return result.affectedRows === 1 ? Number(result.insertId) : null;
  }

  async release(uuid: string, controllerId: string, epoch?: number): Promise<void> {
    const where = [eq(nodes.uuid, uuid), eq(nodes.reservation, controllerId)];
    if (epoch !== undefined) where.push(eq(nodes.ownerEpoch, epoch));
    await this.#db
      .update(nodes)
      .set({ reservation: null })
      .where(and(...where));
  }

  async transition(
    uuid: string,
    from: string,
    to: string,
    fields: StateFields,
    expectedVersion: number | null,
    owner?: NodeOwner,
  ): Promise<NodeRecord | null> {
    const where = [eq(nodes.uuid, uuid), eq(nodes.provisionState, from)];
    if (expectedVersion !== null) where.push(eq(nodes.version, expectedVersion));
    if (owner) where.push(eq(nodes.reservation, owner.controllerId), eq(nodes.ownerEpoch, owner.epoch));
    const [result] = await this.#db
      .update(nodes)
      .set({ ...fields, provisionState: to, version: sql`${nodes.version} + 1`, updatedAt: sql`CURRENT_TIMESTAMP(3)` })
      .where(and(...where));
    if (result.affectedRows === 0) return null;
    return this.findNode(uuid);
  }

  async transitionFrom(node: NodeRecord, to: string, fields: StateFields, owner: NodeOwner): Promise<NodeRecord | null> {
    const written = (Object.keys(fields) as (keyof StateFields)[]).filter((k) => fields[k] !== undefined).sort();
    const statementKey = written.join(',');
    let statement = this.#transitions.get(statementKey);
    if (!statement) {
      statement = prepareTransition(this.#db, written);
      this.#transitions.set(statementKey, statement);
    }
    // Set here, not by the server's clock: the record answered is then the row as written (the column keeps a Date's ms).
    const updatedAt = new Date();
    const [result] = await statement.execute({
      ...fields,
      to,
      nextVersion: node.version + 1,
      updatedAt,
      uuid: node.uuid,
      from: node.provisionState,
      version: node.version,
      holder: owner.controllerId,
      epoch: owner.epoch,
    });
    if (result.affectedRows === 0) return null;
    // The fields written that a record shows (the target states are not part of it).
    const shown: Partial<Record<keyof StateFields, unknown>> = {};
    for (const key of written) if (key in node) shown[key] = fields[key];
    return { ...node, ...(shown as Partial<NodeRecord>), provisionState: to, version: node.version + 1, updatedAt };
  }

  async recordState(uuid: string, fields: StateFields, owner?: NodeOwner): Promise<void> {
    if (Object.keys(fields).length === 0) return;
    const where = [eq(nodes.uuid, uuid)];
    if (owner) where.push(eq(nodes.reservation, owner.controllerId), eq(nodes.ownerEpoch, owner.epoch));
    const [result] = await this.#db
      .update(nodes)
      .set({ ...fields, version: sql`${nodes.version} + 1`, updatedAt: sql`CURRENT_TIMESTAMP(3)` })
      .where(and(...where));
    if (result.affectedRows === 0 && owner) {
      const now = await this.findNode(uuid);
      if (now) throw new StaleOwnerError(uuid, owner, now.reservation, now.ownerEpoch);
    }
  }

  async recordAgent(uuid: string, address: string, seenAt: Date): Promise<void> {
    // No version bump: heartbeats are observations, not changes an editor could lose.
    await this.#db.update(nodes).set({ agentAddress: address, agentSeenAt: seenAt }).where(eq(nodes.uuid, uuid));
  }

  async sealedPassword(uuid: string): Promise<Buffer | null> {
    // Every BMC command reads it (a storm's deploy starts too): its SQL is built once.
    const rows = await this.#sealed.execute({ uuid });
    return rows[0]?.sealed ?? null;
  }
}
