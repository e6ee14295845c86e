/**
 * The one place that decides where an action on a node runs: here when this
 * controller owns the node (the hash ring over the live members of its
 * group, ownership.ts), else at the owner, forwarded over NATS. An action
 * whose node cannot be read here (a bad id, an unknown node) runs locally so
 * that it fails exactly as the local API fails; so does one on a node of a
 * group no live controller serves (nobody else could do better).
 */
import type { Logger } from 'pino';
import type { FenceView, ForwardAction, ForwardArgs, ForwardResults, ForwardClient, Ownership } from '../cluster/index.ts';
import type { BootDeviceSetting } from '../drivers/power/index.ts';
import type { InstanceRecord } from '../instances/index.ts';
import type { NodeStore, NodeRecord } from '../nodes/index.ts';
import { NotFoundError } from '../errors.ts';
import type { NodeActions } from './node-actions.ts';

/** The API's own limit on ids: a longer one is the local code's INVALID_ARGUMENT to report, not a lookup. */
const MAX_ID = 255;

export class NodeRouter implements NodeActions {
  readonly #local: NodeActions;
  readonly #store: NodeStore;
  readonly #ownership: Ownership;
  readonly #forward: ForwardClient;
  readonly #log: Logger;
  readonly #fence: FenceView | undefined;

  /** `fence`: while fenced, an action is refused at once; finding its owner would wait on a database we cannot reach. */
  constructor(local: NodeActions, store: NodeStore, ownership: Ownership, forward: ForwardClient, log: Logger, fence?: FenceView) {
    this.#local = local;
    this.#fence = fence;
    this.#store = store;
    this.#ownership = ownership;
    this.#forward = forward;
    this.#log = log;
  }

  async #route<A extends ForwardAction, R>(
    nodeId: string | null,
    action: A,
    args: (nodeUuid: string) => ForwardArgs[A],
    local: () => Promise<R>,
    fromRemote: (result: ForwardResults[A], nodeUuid: string) => R | Promise<R>,
  ): Promise<R> {
    this.#fence?.check();
    if (nodeId === null || nodeId.length === 0 || nodeId.length > MAX_ID) return local();
    const node = await this.#store.findNode(nodeId);
    if (!node) return local();
    const owners = await this.#ownership.snapshot();
    const owner = owners.ownerOf(node);
    if (owner === null || owners.isSelf(owner)) return local();
    this.#log.debug({ node: node.uuid, action, owner: owner.id }, 'forwarding to the node owner');
    return fromRemote(await this.#forward.call(owner, action, args(node.uuid)), node.uuid);
  }

  /** The node as the owner left it: records never travel over the forward, the database has them. */
  async #reread(uuid: string): Promise<NodeRecord> {
    const node = await this.#store.findNode(uuid);
    if (!node) throw new NotFoundError('node', uuid);
    return node;
  }

  setPowerState(id: string, target: string): Promise<NodeRecord> {
    return this.#route(
      id,
      'power-set',
      (node) => ({ node, target }),
      () => this.#local.setPowerState(id, target),
      (_, uuid) => this.#reread(uuid),
    );
  }

  powerState(id: string): Promise<string> {
    return this.#route(
      id,
      'power-get',
      (node) => ({ node }),
      () => this.#local.powerState(id),
      (r) => r.powerState,
    );
  }

  setBootDevice(id: string, device: string, persistent: boolean, uefi: boolean): Promise<BootDeviceSetting> {
    return this.#route(
      id,
      'boot-device-set',
      (node) => ({ node, device, persistent, uefi }),
      () => this.#local.setBootDevice(id, device, persistent, uefi),
      (r) => r,
    );
  }

  bootDevice(id: string): Promise<BootDeviceSetting> {
    return this.#route(
      id,
      'boot-device-get',
      (node) => ({ node }),
      () => this.#local.bootDevice(id),
      (r) => r,
    );
  }

  provision(id: string, verb: string): Promise<NodeRecord> {
    return this.#route(
      id,
      'provision',
      (node) => ({ node, verb }),
      () => this.#local.provision(id, verb),
      (_, uuid) => this.#reread(uuid),
    );
  }

  /**
   * A claimed node's deploy runs at the claim's holder: the scheduler made the node's owner the holder, so the
   * decision was taken with the claim, and the ring changing since must not make two controllers think it theirs.
   */
  async deploy(node: NodeRecord, instance: InstanceRecord): Promise<void> {
    this.#fence?.check();
    const holder = node.reservation;
    if (holder === null || holder === this.#ownership.selfId) return this.#local.deploy(node, instance);
    const member = (await this.#ownership.snapshot()).member(holder) ?? { id: holder, apiAddress: 'unknown (no live heartbeat)' };
    this.#log.debug({ node: node.uuid, instance: instance.uuid, owner: holder }, 'forwarding a deploy to the node owner');
    await this.#forward.call(member, 'deploy', { node: node.uuid, instance: instance.uuid });
  }

  undeploy(instance: InstanceRecord): Promise<void> {
    return this.#route(
      instance.nodeUuid,
      'undeploy',
      () => ({ instance: instance.uuid }),
      () => this.#local.undeploy(instance),
      () => undefined,
    );
  }
}
