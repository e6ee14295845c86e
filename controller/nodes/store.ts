/**
 * The seam between node logic and storage. The MySQL implementation is the
 * real one; the interface lets conductor logic be unit-tested without a
 * database.
 */
import type { NodeOwner } from './owner.ts';
import type { NodeFilter, NodeRecord, NodeSpec, Page, PortRecord } from './types.ts';

export interface NewNode extends NodeSpec {
  readonly uuid: string;
  readonly pmPasswordEnc: Buffer | null;
  readonly powerDriver: string;
  readonly properties: Readonly<Record<string, string>>;
  /** '' (the default) matches flavors without a resource class. */
  readonly resourceClass?: string;
}

export interface NodeChanges extends Partial<NodeSpec> {
  readonly pmPasswordEnc?: Buffer;
  readonly maintenance?: boolean;
  readonly maintenanceReason?: string | null;
  readonly properties?: Readonly<Record<string, string>>;
  readonly powerDriver?: string;
  readonly resourceClass?: string;
}

export interface NodeStore {
  /** Creates the node and its ports in one transaction (a MAC already taken aborts it all). */
  createNode(node: NewNode, ports: readonly { uuid: string; mac: string }[]): Promise<NodeRecord>;
  /** By UUID or name. */
  findNode(id: string): Promise<NodeRecord | null>;
  listNodes(filter: NodeFilter, limit: number, marker: string | null): Promise<Page<NodeRecord>>;
  /** Applies changes when the row still has `expectedVersion` (when given); bumps the version. */
  updateNode(uuid: string, changes: NodeChanges, expectedVersion: number | null): Promise<NodeRecord>;
  /** Deletes unless the node is in one of `refusedStates` or reserved; returns the deleted record. */
  deleteNode(uuid: string, refusedStates: readonly string[]): Promise<NodeRecord>;
  /** Refuses with TooManyPortsError when the node already has `maxPorts` ports (checked atomically where the store can). */
  createPort(port: { uuid: string; nodeUuid: string; mac: string }, maxPorts?: number): Promise<PortRecord>;
  /** By UUID or MAC. */
  findPort(id: string): Promise<PortRecord | null>;
  /** The node owning any of these MACs, in one query. */
  findNodeByMacs(macs: readonly string[]): Promise<NodeRecord | null>;
  listPorts(nodeUuid: string | null, limit: number, marker: string | null): Promise<Page<PortRecord>>;
  deletePort(uuid: string): Promise<void>;
  countNodes(): Promise<number>;
  /**
   * Atomically takes the node's lock (`UPDATE ... WHERE reservation IS NULL`) and bumps its owner epoch;
   * resolves to the new epoch (always > 0), or null when another holds the lock.
   */
  reserve(uuid: string, controllerId: string): Promise<number | null>;
  /** Releases the lock if this controller still holds it (at `epoch`, when given). */
  release(uuid: string, controllerId: string, epoch?: number): Promise<void>;
  /**
   * Changes state fields when the node is still in `from` (and at `expectedVersion` when given, and still
   * held by `owner` at its epoch when given); null when a condition failed.
   */
  transition(
    uuid: string,
    from: string,
    to: string,
    fields: StateFields,
    expectedVersion: number | null,
    owner?: NodeOwner,
  ): Promise<NodeRecord | null>;
  /**
   * `transition` from exactly this record (its state and version, still held by `owner`), answering the record plus the
   * change without reading the row again: nothing that bumps the version came between. The agent's address and
   * heartbeat, which change without a version bump, are as `node` had them (a wait for the agent re-reads). Null when
   * a condition failed.
   */
  transitionFrom(node: NodeRecord, to: string, fields: StateFields, owner: NodeOwner): Promise<NodeRecord | null>;
  /** Records observed state (power, last_error) without a provision transition; with `owner`, StaleOwnerError once it lost the node. */
  recordState(uuid: string, fields: StateFields, owner?: NodeOwner): Promise<void>;
  /** Where a node's agent listens and when it last called in. */
  recordAgent(uuid: string, address: string, seenAt: Date): Promise<void>;
  /** The sealed BMC password, for power drivers only. */
  sealedPassword(uuid: string): Promise<Buffer | null>;
}

export interface StateFields {
  readonly powerState?: string;
  readonly targetPowerState?: string | null;
  readonly targetProvisionState?: string | null;
  readonly lastError?: string | null;
  readonly maintenance?: boolean;
  readonly maintenanceReason?: string | null;
  readonly instanceUuid?: string | null;
}
