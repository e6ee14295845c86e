/**
 * NodeStore in memory, for fast unit tests of conductor logic (as the boot
 * backend has one). Same contract as the MySQL store: unique MACs and names,
 * the reservation taken only when free, transitions only from the expected
 * state and version, every write bumps the version.
 */
import { AlreadyExistsError, BmError, ConflictError, NotFoundError } from '../errors.ts';
import { StaleOwnerError, type NodeOwner } from './owner.ts';
import type { NewNode, NodeChanges, NodeStore, StateFields } from './store.ts';
import type { NodeFilter, NodeRecord, Page, PortRecord } from './types.ts';
import { isUuid } from './uuid.ts';

interface Row {
  node: NodeRecord;
  sealed: Buffer | null;
}

export class InMemoryNodeStore implements NodeStore {
  readonly #rows = new Map<string, Row>();
  readonly #ports = new Map<string, PortRecord>();

  #macsOf(uuid: string): string[] {
    return [...this.#ports.values()].filter((p) => p.nodeUuid === uuid).map((p) => p.mac);
  }

  #view(row: Row): NodeRecord {
    return { ...row.node, macs: this.#macsOf(row.node.uuid) };
  }

  #row(uuid: string): Row {
    const row = this.#rows.get(uuid);
    if (!row) throw new NotFoundError('node', uuid);
    return row;
  }

  #bump(row: Row, changes: Partial<NodeRecord>): void {
    row.node = { ...row.node, ...changes, version: row.node.version + 1, updatedAt: new Date() };
  }

  async createNode(node: NewNode, ports: readonly { uuid: string; mac: string }[]): Promise<NodeRecord> {
    for (const p of ports)
      if ([...this.#ports.values()].some((q) => q.mac === p.mac))
        throw new AlreadyExistsError(`MAC ${p.mac} already belongs to another node`, { mac: p.mac });
    if (node.name && [...this.#rows.values()].some((r) => r.node.name === node.name))
      throw new AlreadyExistsError(`a node named ${node.name} already exists`);
    const now = new Date();
    const record: NodeRecord = {
      ...node,
      pmPasswordSet: node.pmPasswordEnc !== null && node.pmPasswordEnc.length > 0,
      provisionState: 'enroll',
      powerState: 'unknown',
      maintenance: false,
      maintenanceReason: null,
      instanceUuid: null,
      lastError: null,
      properties: { ...node.properties },
      reservation: null,
      ownerEpoch: 0,
      agentAddress: null,
      agentSeenAt: null,
      powerSyncFailures: 0,
      resourceClass: node.resourceClass ?? '',
      version: 1,
      createdAt: now,
      updatedAt: now,
      macs: [],
    };
    this.#rows.set(node.uuid, { node: record, sealed: node.pmPasswordEnc });
    for (const p of ports) this.#ports.set(p.uuid, { uuid: p.uuid, nodeUuid: node.uuid, mac: p.mac, createdAt: now });
    return this.#view(this.#rows.get(node.uuid)!);
  }

  async findNode(id: string): Promise<NodeRecord | null> {
    const row = isUuid(id) ? this.#rows.get(id) : [...this.#rows.values()].find((r) => r.node.name === id);
    return row ? this.#view(row) : null;
  }

  async listNodes(filter: NodeFilter, limit: number, marker: string | null): Promise<Page<NodeRecord>> {
    const all = [...this.#rows.values()]
      .map((r) => this.#view(r))
      .filter((n) => (marker ? n.uuid > marker : true))
      .filter((n) => (filter.provisionState ? n.provisionState === filter.provisionState : true))
      .filter((n) => (filter.group ? n.group === filter.group : true))
      .filter((n) => (filter.maintenance !== undefined ? n.maintenance === filter.maintenance : true))
      .filter((n) =>
        filter.associated === true
          ? n.instanceUuid !== null
          : filter.associated === false
            ? n.instanceUuid === null
            : typeof filter.associated === 'string'
              ? n.instanceUuid === filter.associated
              : true,
      )
      .sort((a, b) => (a.uuid < b.uuid ? -1 : 1));
    const items = all.slice(0, limit);
    return { items, nextMarker: all.length > limit ? (items[items.length - 1]?.uuid ?? null) : null };
  }

  async updateNode(uuid: string, changes: NodeChanges, expectedVersion: number | null): Promise<NodeRecord> {
    const row = this.#row(uuid);
    if (expectedVersion !== null && row.node.version !== expectedVersion)
      throw new ConflictError(`node ${uuid} was changed meanwhile`, { node: uuid });
    const { pmPasswordEnc, ...rest } = changes;
    if (pmPasswordEnc) row.sealed = pmPasswordEnc;
    this.#bump(row, { ...rest, ...(pmPasswordEnc ? { pmPasswordSet: true } : {}) } as Partial<NodeRecord>);
    return this.#view(row);
  }

  async deleteNode(uuid: string, refusedStates: readonly string[]): Promise<NodeRecord> {
    const row = this.#row(uuid);
    if (refusedStates.includes(row.node.provisionState))
      throw new BmError('failed-precondition', `node ${uuid} is ${row.node.provisionState}`, { node: uuid });
    if (row.node.reservation) throw new ConflictError(`node ${uuid} is locked`, { node: uuid });
    const before = this.#view(row);
    this.#rows.delete(uuid);
    for (const [id, p] of this.#ports) if (p.nodeUuid === uuid) this.#ports.delete(id);
    return before;
  }

  async createPort(port: { uuid: string; nodeUuid: string; mac: string }): Promise<PortRecord> {
    this.#row(port.nodeUuid);
    if ([...this.#ports.values()].some((p) => p.mac === port.mac))
      throw new AlreadyExistsError(`MAC ${port.mac} already belongs to another node`, { mac: port.mac });
    const record = { ...port, createdAt: new Date() };
    this.#ports.set(port.uuid, record);
    return record;
  }

  async findPort(id: string): Promise<PortRecord | null> {
    return this.#ports.get(id) ?? [...this.#ports.values()].find((p) => p.mac === id) ?? null;
  }

  async findNodeByMacs(macs: readonly string[]): Promise<NodeRecord | null> {
    const port = [...this.#ports.values()].find((p) => macs.includes(p.mac));
    return port ? this.findNode(port.nodeUuid) : null;
  }

  async listPorts(nodeUuid: string | null, limit: number, marker: string | null): Promise<Page<PortRecord>> {
    const all = [...this.#ports.values()]
      .filter((p) => (nodeUuid ? p.nodeUuid === nodeUuid : true) && (marker ? p.uuid > marker : true))
      .sort((a, b) => (a.uuid < b.uuid ? -1 : 1));
    const items = all.slice(0, limit);
    return { items, nextMarker: all.length > limit ? (items[items.length - 1]?.uuid ?? null) : null };
  }

  async deletePort(uuid: string): Promise<void> {
    if (!this.#ports.delete(uuid)) throw new NotFoundError('port', uuid);
  }

  async countNodes(): Promise<number> {
    return this.#rows.size;
  }

  async reserve(uuid: string, controllerId: string): Promise<number | null> {
    const row = this.#rows.get(uuid);
    if (!row || row.node.reservation !== null) return null;
    row.node = { ...row.node, reservation: controllerId, ownerEpoch: row.node.ownerEpoch + 1 };
    return row.node.ownerEpoch;
  }

  async release(uuid: string, controllerId: string, epoch?: number): Promise<void> {
    const row = this.#rows.get(uuid);
    if (row?.node.reservation === controllerId && (epoch === undefined || row.node.ownerEpoch === epoch))
      row.node = { ...row.node, reservation: null };
  }

  /** What a peer's dead-reservation breaker does: clears the lock and bumps the epoch. */
  breakReservation(uuid: string): void {
    const row = this.#rows.get(uuid);
    if (row) row.node = { ...row.node, reservation: null, ownerEpoch: row.node.ownerEpoch + 1 };
  }

  #owns(node: NodeRecord, owner: NodeOwner | undefined): boolean {
    return !owner || (node.reservation === owner.controllerId && node.ownerEpoch === owner.epoch);
  }

  async transition(
    uuid: string,
    from: string,
    to: string,
    fields: StateFields,
    expectedVersion: number | null,
    owner?: NodeOwner,
  ): Promise<NodeRecord | null> {
    const row = this.#rows.get(uuid);
    if (
      !row ||
      row.node.provisionState !== from ||
      (expectedVersion !== null && row.node.version !== expectedVersion) ||
      !this.#owns(row.node, owner)
    )
      return null;
    this.#bump(row, { ...fields, provisionState: to } as Partial<NodeRecord>);
    return this.#view(row);
  }

  transitionFrom(node: NodeRecord, to: string, fields: StateFields, owner: NodeOwner): Promise<NodeRecord | null> {
    return this.transition(node.uuid, node.provisionState, to, fields, node.version, owner);
  }

  async recordState(uuid: string, fields: StateFields, owner?: NodeOwner): Promise<void> {
    const row = this.#rows.get(uuid);
    if (!row || Object.keys(fields).length === 0) return;
    if (owner && !this.#owns(row.node, owner)) throw new StaleOwnerError(uuid, owner, row.node.reservation, row.node.ownerEpoch);
    this.#bump(row, fields as Partial<NodeRecord>);
  }

  async recordAgent(uuid: string, address: string, seenAt: Date): Promise<void> {
    const row = this.#rows.get(uuid);
    if (row) row.node = { ...row.node, agentAddress: address, agentSeenAt: seenAt };
  }

  async sealedPassword(uuid: string): Promise<Buffer | null> {
    return this.#rows.get(uuid)?.sealed ?? null;
  }
}
