/**
 * The node store as a fenced controller may use it: reads pass, every write
 * first checks the fence (cluster/fence.ts) at the moment it is made. A
 * request that passed its own check before the fence closed and then waited
 * on the database (an agent's heartbeat, an API verb) still writes nothing
 * once it has closed.
 */
import type { FenceView } from '../cluster/index.ts';
import type { NodeOwner } from './owner.ts';
import type { NewNode, NodeChanges, NodeStore, StateFields } from './store.ts';
import type { NodeFilter, NodeRecord, Page, PortRecord } from './types.ts';

export class FencedNodeStore implements NodeStore {
  readonly #inner: NodeStore;
  readonly #fence: FenceView;

  constructor(inner: NodeStore, fence: FenceView) {
    this.#inner = inner;
    this.#fence = fence;
  }

  async createNode(node: NewNode, ports: readonly { uuid: string; mac: string }[]): Promise<NodeRecord> {
    this.#fence.check();
    return this.#inner.createNode(node, ports);
  }

  findNode(id: string): Promise<NodeRecord | null> {
    return this.#inner.findNode(id);
  }

  listNodes(filter: NodeFilter, limit: number, marker: string | null): Promise<Page<NodeRecord>> {
    return this.#inner.listNodes(filter, limit, marker);
  }

  async updateNode(uuid: string, changes: NodeChanges, expectedVersion: number | null): Promise<NodeRecord> {
    this.#fence.check();
    return this.#inner.updateNode(uuid, changes, expectedVersion);
  }

  async deleteNode(uuid: string, refusedStates: readonly string[]): Promise<NodeRecord> {
    this.#fence.check();
    return this.#inner.deleteNode(uuid, refusedStates);
  }

  async createPort(port: { uuid: string; nodeUuid: string; mac: string }, maxPorts?: number): Promise<PortRecord> {
    this.#fence.check();
    return this.#inner.createPort(port, maxPorts);
  }

  findPort(id: string): Promise<PortRecord | null> {
    return this.#inner.findPort(id);
  }

  findNodeByMacs(macs: readonly string[]): Promise<NodeRecord | null> {
    return this.#inner.findNodeByMacs(macs);
  }

  listPorts(nodeUuid: string | null, limit: number, marker: string | null): Promise<Page<PortRecord>> {
    return this.#inner.listPorts(nodeUuid, limit, marker);
  }

  async deletePort(uuid: string): Promise<void> {
    this.#fence.check();
    return this.#inner.deletePort(uuid);
  }

  countNodes(): Promise<number> {
    return this.#inner.countNodes();
  }

  async reserve(uuid: string, controllerId: string): Promise<number | null> {
    this.#fence.check();
    return this.#inner.reserve(uuid, controllerId);
  }

  async release(uuid: string, controllerId: string, epoch?: number): Promise<void> {
    this.#fence.check();
    return this.#inner.release(uuid, controllerId, epoch);
  }

  async transition(
    uuid: string,
    from: string,
    to: string,
    fields: StateFields,
    expectedVersion: number | null,
    owner?: NodeOwner,
  ): Promise<NodeRecord | null> {
    this.#fence.check();
    return this.#inner.transition(uuid, from, to, fields, expectedVersion, owner);
  }

  async transitionFrom(node: NodeRecord, to: string, fields: StateFields, owner: NodeOwner): Promise<NodeRecord | null> {
    this.#fence.check();
    return this.#inner.transitionFrom(node, to, fields, owner);
  }

  async recordState(uuid: string, fields: StateFields, owner?: NodeOwner): Promise<void> {
    this.#fence.check();
    return this.#inner.recordState(uuid, fields, owner);
  }

  async recordAgent(uuid: string, address: string, seenAt: Date): Promise<void> {
    this.#fence.check();
    return this.#inner.recordAgent(uuid, address, seenAt);
  }

  sealedPassword(uuid: string): Promise<Buffer | null> {
    return this.#inner.sealedPassword(uuid);
  }
}
