/**
 * What a MAC should boot, read from MySQL for the HTTP boot server. A node
 * that fetches its ramdisk script gets the agent token the conductor armed
 * for this boot, once (agents/tokens.ts): the token travels on the kernel
 * command line. A deploy boots the deploy kernel and ramdisk its flavor names
 * (baremetal:deploy_kernel_id / _ramdisk_id), else the configured defaults.
 */
import { eq } from 'drizzle-orm';
import { type Database, flavors, instances } from '../../db/index.ts';
import type { BootProvisionState, BootStateSource, NodeBootState } from '../boot/index.ts';
import type { AgentTokenStore } from '../agents/index.ts';
import { FLAVOR_KEYS } from '../flavors/index.ts';
import type { NodeStore } from '../nodes/index.ts';

function bootStateOf(provisionState: string): BootProvisionState {
  switch (provisionState) {
    case 'deploying':
    case 'wait-callback':
      return 'deploying';
    case 'cleaning':
    case 'deleting':
      return 'cleaning';
    case 'inspecting':
    case 'inspect-wait':
      return 'inspecting';
    case 'active':
      return 'active';
    default:
      return 'other';
  }
}

export class MysqlBootStateSource implements BootStateSource {
  readonly #store: NodeStore;
  readonly #tokens: AgentTokenStore;
  readonly #db: Database;

  constructor(store: NodeStore, tokens: AgentTokenStore, db: Database) {
    this.#store = store;
    this.#tokens = tokens;
    this.#db = db;
  }

  async #flavorImages(instanceUuid: string | null): Promise<{ kernel: string | null; ramdisk: string | null }> {
    if (!instanceUuid) return { kernel: null, ramdisk: null };
    const [row] = await this.#db
      .select({ specs: flavors.extraSpecs })
      .from(instances)
      .innerJoin(flavors, eq(flavors.uuid, instances.flavorUuid))
      .where(eq(instances.uuid, instanceUuid))
      .limit(1);
    return { kernel: row?.specs?.[FLAVOR_KEYS.deployKernel] ?? null, ramdisk: row?.specs?.[FLAVOR_KEYS.deployRamdisk] ?? null };
  }

  async bootStateFor(mac: string, options: { readonly peek?: boolean } = {}): Promise<NodeBootState | null> {
    const port = await this.#store.findPort(mac);
    if (!port) return null;
    const node = await this.#store.findNode(port.nodeUuid);
    if (!node) return null;
    const state = bootStateOf(node.provisionState);
    const needsAgent = state === 'deploying' || state === 'cleaning' || state === 'inspecting';
    const images = state === 'deploying' ? await this.#flavorImages(node.instanceUuid) : { kernel: null, ramdisk: null };
    return {
      nodeUuid: node.uuid,
      provisionState: state,
      agentToken: !needsAgent ? null : options.peek ? 'token-withheld-for-peek' : await this.#tokens.deliver(node.uuid),
      deployKernel: images.kernel,
      deployRamdisk: images.ramdisk,
    };
  }
}
