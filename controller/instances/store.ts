/**
 * Instance rows in MySQL. A project scope, when given, is part of every
 * query's WHERE: a member can never read or change another project's rows,
 * whatever id it sends.
 */
import { and, asc, eq, sql, type SQL } from 'drizzle-orm';
import { type Database, instances, type InstanceRow } from '../../db/index.ts';
import { NotFoundError } from '../errors.ts';
import { isUuid } from '../nodes/index.ts';
import type { Transaction } from '../scheduler/index.ts';
import type { InstanceNetwork, InstanceRecord, InstanceState } from './types.ts';

function toRecord(row: InstanceRow): InstanceRecord {
  return {
    uuid: row.uuid,
    name: row.name,
    project: row.project,
    flavorUuid: row.flavorUuid,
    imageUuid: row.imageUuid,
    nodeUuid: row.nodeUuid,
    state: row.state as InstanceState,
    progress: row.progress,
    lastError: row.lastError,
    userData: row.userData,
    sshKeys: row.sshKeys ?? [],
    network: (row.network as unknown as InstanceNetwork) ?? { mode: 'dhcp' },
    address: row.address,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export interface InstanceFields {
  readonly state?: InstanceState;
  readonly progress?: number;
  readonly lastError?: string | null;
  readonly nodeUuid?: string | null;
  readonly address?: string | null;
}

export class InstanceStore {
  readonly #db: Database;
  /** By uuid in any project, the SQL built once: every forwarded deploy and resumed deploy reads its instance so. */
  readonly #byUuid;

  constructor(db: Database) {
    this.#db = db;
    this.#byUuid = db
      .select()
      .from(instances)
      .where(eq(instances.uuid, sql.placeholder('uuid')))
      .prepare();
  }

  /** Inserts the row; inside `tx` (the scheduler's claim) when given, so the row exists exactly when its node is claimed. */
  async create(record: Omit<InstanceRecord, 'createdAt' | 'updatedAt'>, tx?: Transaction): Promise<InstanceRecord> {
    const now = new Date();
    const created = { ...record, createdAt: now, updatedAt: now };
    await this.insertMany([created], tx);
    return created;
  }

  /** Inserts the records as they are, with one statement (a batch of claims binds all its instances at once). */
  async insertMany(records: readonly InstanceRecord[], tx?: Transaction): Promise<void> {
    if (records.length === 0) return;
    const rows = records.map((record) => ({
      ...record,
      sshKeys: [...record.sshKeys],
      network: { ...record.network } as Record<string, unknown>,
    }));
    await (tx ?? this.#db).insert(instances).values(rows);
  }

  /** By UUID, or by name within the project; null project: any project (admin). */
  async find(id: string, project: string | null): Promise<InstanceRecord | null> {
    if (id.length === 0 || id.length > 255) return null;
    if (project === null && isUuid(id)) {
      const [row] = await this.#byUuid.execute({ uuid: id });
      return row ? toRecord(row) : null;
    }
    const where: SQL[] = [isUuid(id) ? eq(instances.uuid, id) : eq(instances.name, id)];
    if (project !== null) where.push(eq(instances.project, project));
    const rows = await this.#db
      .select()
      .from(instances)
      .where(and(...where))
      .orderBy(asc(instances.createdAt))
      .limit(1);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  async get(id: string, project: string | null): Promise<InstanceRecord> {
    const found = await this.find(id, project);
    // Another project's instance is "not found", not "forbidden": a member learns nothing of it.
    if (!found) throw new NotFoundError('instance', id.slice(0, 255));
    return found;
  }

  async list(project: string | null): Promise<InstanceRecord[]> {
    const rows = await this.#db
      .select()
      .from(instances)
      .where(project !== null ? eq(instances.project, project) : undefined)
      .orderBy(asc(instances.createdAt), asc(instances.uuid));
    return rows.map(toRecord);
  }

  async update(uuid: string, fields: InstanceFields): Promise<void> {
    if (Object.keys(fields).length === 0) return;
    await this.#db
      .update(instances)
      .set({ ...fields, updatedAt: new Date() })
      .where(eq(instances.uuid, uuid));
  }

  async projectHasNode(project: string, nodeUuid: string): Promise<boolean> {
    const rows = await this.#db
      .select({ uuid: instances.uuid })
      .from(instances)
      .where(and(eq(instances.project, project), eq(instances.nodeUuid, nodeUuid)))
      .limit(1);
    return rows.length > 0;
  }

  async remove(uuid: string, tx?: Transaction): Promise<void> {
    await (tx ?? this.#db).delete(instances).where(eq(instances.uuid, uuid));
  }
}
