/**
 * What the controller tells deploy agents: who they are (Lookup by MAC), that
 * they are alive (Heartbeat), and, for machines never seen, enrollment from
 * their own inventory (Register, only with discovery switched on).
 */
import type { Inventory } from '../../proto/gen/bm/agent/v1/inventory_pb.js';
import { BmError, ValidationError } from '../errors.ts';
import type { EventBus } from '../events/index.ts';
import { isIP } from 'node:net';
import {
  normalizeMac,
  type NodeStore,
  CPU_ARCHES,
  MAX_PORTS_PER_NODE,
  type NodeRecord,
  isUuid,
  uuidv7,
  DEFAULT_PM_PORT,
  DEFAULT_POWER_DRIVER,
} from '../nodes/index.ts';
import { UnauthenticatedError } from '../auth/index.ts';
import { TokenBucket } from './rate-limit.ts';
import type { AgentTokenStore } from './tokens.ts';

export type AgentAction = 'deploy' | 'clean' | 'inspect' | 'wait';

export function actionFor(state: string): AgentAction {
  switch (state) {
    case 'deploying':
    case 'wait-callback':
      return 'deploy';
    case 'cleaning':
    case 'deleting':
      return 'clean';
    case 'inspecting':
    case 'inspect-wait':
      return 'inspect';
    default:
      return 'wait';
  }
}

export interface DiscoveryOptions {
  readonly enabled: boolean;
  readonly group: string;
  readonly ratePerSecond: number;
  readonly burst: number;
}

export class RateLimitedError extends BmError {
  constructor() {
    super('resource-exhausted', 'too many registrations; retry later');
  }
}

const MAX_MACS = MAX_PORTS_PER_NODE;
/** A Lookup names the booting machine's NICs: a handful, looked up in one query. */
export const MAX_LOOKUP_MACS = 8;

/** Where a node's MACs hold bound DHCP leases (none when another server leases). */
export type LeasedAddresses = (macs: readonly string[]) => Promise<string[]>;

/** The host part of a peer string from grpc-js ("1.2.3.4:5", "[::1]:5", "ipv4:1.2.3.4:5"). */
export function peerHost(peer: string): string {
  const bare = peer.replace(/^ipv[46]:/, '');
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(bare);
  if (v6) return v6[1]!.replace(/^::ffff:/, '');
  const v4 = /^([^:]+):\d+$/.exec(bare);
  return v4 ? v4[1]! : bare;
}

/** Published on an agent's first heartbeat of a boot: a deploy, clean or inspection waiting for it reads the node then. */
export const AGENT_CALLED_BACK = 'agent.called-back';

export class AgentRegistry {
  readonly #store: NodeStore;
  readonly #tokens: AgentTokenStore;
  readonly #events: EventBus;
  readonly #discovery: DiscoveryOptions;
  readonly #bucket: TokenBucket;

  readonly #leased: LeasedAddresses;

  constructor(
    store: NodeStore,
    tokens: AgentTokenStore,
    events: EventBus,
    discovery: DiscoveryOptions,
    leased: LeasedAddresses = async () => [],
  ) {
    this.#leased = leased;
    this.#store = store;
    this.#tokens = tokens;
    this.#events = events;
    this.#discovery = discovery;
    this.#bucket = new TokenBucket(discovery.ratePerSecond, discovery.burst);
  }

  #macs(input: readonly string[], max = MAX_MACS): string[] {
    if (input.length === 0) throw new ValidationError('macs', 'at least one MAC is required');
    if (input.length > max) throw new ValidationError('macs', `at most ${max}`);
    return [...new Set(input.map((m) => normalizeMac(m, 'macs')))];
  }

  async #nodeForMacs(macs: readonly string[]): Promise<NodeRecord | null> {
    return this.#store.findNodeByMacs(macs);
  }

  async #authorize(node: NodeRecord, token: string | undefined): Promise<void> {
    if (token === undefined || !(await this.#tokens.verify(node.uuid, token))) throw new UnauthenticatedError();
  }

  /**
   * A known machine must show its node's token. An unknown MAC gets the same UNAUTHENTICATED as a
   * wrong token, so nobody learns which MACs are enrolled; an agent without a token then Registers.
   */
  async lookup(macInput: readonly string[], token: string | undefined): Promise<{ node: NodeRecord; action: AgentAction }> {
    const node = await this.#nodeForMacs(this.#macs(macInput, MAX_LOOKUP_MACS));
    if (!node) throw new UnauthenticatedError();
    await this.#authorize(node, token);
    return { node, action: actionFor(node.provisionState) };
  }

  /**
   * The controller streams images to the address a heartbeat names, so it must be the agent's own:
   * an IP literal that is the heartbeat's source address or a bound lease of one of the node's MACs,
   * with a port 1-65535. Anything else is refused and nothing is stored.
   */
  async heartbeat(nodeUuid: string, agentAddress: string, token: string | undefined, peer = ''): Promise<AgentAction> {
    if (!isUuid(nodeUuid)) throw new ValidationError('node_uuid', 'must be a node uuid');
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(agentAddress);
    const host = m?.[1] ?? m?.[2] ?? '';
    const port = Number(m?.[3] ?? 0);
    if (!m || !isIP(host) || port < 1 || port > 65535)
      throw new ValidationError('agent_address', 'must be IP:port (an IPv4 address, or [IPv6]), port 1-65535');
    const node = await this.#store.findNode(nodeUuid);
    // Unknown node and wrong token look the same from outside.
    if (!node) throw new UnauthenticatedError();
    await this.#authorize(node, token);
    if (host !== peerHost(peer) && !(await this.#leased(node.macs)).includes(host)) {
      throw new BmError('permission-denied', `agent_address ${host} is neither where this heartbeat came from nor a lease of this node`, {
        node: node.uuid,
      });
    }
    await this.#store.recordAgent(node.uuid, agentAddress, new Date());
    // The first heartbeat of a boot (arming the token cleared the last one) wakes the flow waiting for it, on any controller.
    if (node.agentSeenAt === null)
      this.#events.publish({
        nodeUuid: node.uuid,
        type: AGENT_CALLED_BACK,
        provisionState: node.provisionState,
        details: { address: agentAddress },
      });
    return actionFor(node.provisionState);
  }

  /** The one call without a token: it can only ever create a node in `enroll`. */
  async register(inventory: Inventory | undefined): Promise<NodeRecord> {
    if (!this.#discovery.enabled)
      throw new BmError('failed-precondition', 'discovery is off: enroll this machine with `bmctl node create`, or set discovery.enabled');
    if (!this.#bucket.take()) throw new RateLimitedError();
    if (!inventory) throw new ValidationError('inventory', 'is required');
    const macs = this.#macs(inventory.nics.map((n) => n.mac));
    // An enrolled machine needs its node's token; saying "already enrolled" would tell a stranger which MACs are.
    if (await this.#nodeForMacs(macs)) throw new UnauthenticatedError();
    const arch = inventory.cpu?.arch ?? '';
    const cpuArch = (CPU_ARCHES as readonly string[]).includes(arch) ? arch : 'x86_64';
    const largestDisk = inventory.disks.reduce((max, d) => (d.sizeBytes > max ? d.sizeBytes : max), 0n);
    const clip = (s: string, n: number): string => s.slice(0, n);
    const uuid = uuidv7();
    const node = await this.#store.createNode(
      {
        uuid,
        name: null,
        group: this.#discovery.group,
        cpus: Math.max(1, Math.min(4096, inventory.cpu?.count ?? 1)),
        memoryMb: Math.max(1, Math.min(64 * 1024 * 1024, Number(inventory.memoryBytes / 1048576n))),
        localGb: Math.max(1, Math.min(1_000_000, Number(largestDisk / 1073741824n))),
        cpuArch,
        // The BMC is unknown until an operator sets it; `manage` says so until then.
        pmAddress: '',
        pmPort: DEFAULT_PM_PORT,
        pmUser: '',
        pmPasswordEnc: null,
        powerDriver: DEFAULT_POWER_DRIVER,
        properties: {
          discovered: 'true',
          cpu_model: clip(inventory.cpu?.model ?? '', 255),
          boot_mode: clip(inventory.bootMode, 8),
          vendor: clip(inventory.dmi?.vendor ?? '', 255),
          product: clip(inventory.dmi?.product ?? '', 255),
          serial: clip(inventory.dmi?.serial ?? '', 255),
          disks: clip(inventory.disks.map((d) => `${d.name}:${d.sizeBytes}`).join(','), 1024),
        },
      },
      macs.map((mac) => ({ uuid: uuidv7(), mac })),
    );
    this.#events.publish({
      nodeUuid: node.uuid,
      type: 'node.created',
      provisionState: node.provisionState,
      details: { discovered: 'true', macs: macs.join(',') },
    });
    return node;
  }
}
