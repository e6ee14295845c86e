/**
 * What a MAC should boot, read from MySQL for the HTTP boot server. A node
 * that fetches its ramdisk script gets a fresh agent token for the operation
 * it is in (the previous one stops working): the token travels on the kernel
 * command line and only its hash is stored.
 */
import type { BootProvisionState, BootStateSource, NodeBootState } from '../boot/boot-plan.ts';
import type { AgentTokenStore } from '../agents/tokens.ts';
import type { NodeStore } from '../nodes/store.ts';

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
  readonly #tokenTtlMs: number;

  constructor(store: NodeStore, tokens: AgentTokenStore, tokenTtlMs: number) {
    this.#store = store;
    this.#tokens = tokens;
    this.#tokenTtlMs = tokenTtlMs;
  }

  async bootStateFor(mac: string): Promise<NodeBootState | null> {
    const port = await this.#store.findPort(mac);
    if (!port) return null;
    const node = await this.#store.findNode(port.nodeUuid);
    if (!node) return null;
    const state = bootStateOf(node.provisionState);
    const needsAgent = state === 'deploying' || state === 'cleaning' || state === 'inspecting';
    return {
      nodeUuid: node.uuid,
      provisionState: state,
      agentToken: needsAgent ? await this.#tokens.issue(node.uuid, this.#tokenTtlMs) : null,
      // Flavors (with baremetal:deploy_kernel_id) arrive with scheduling; until then the configured defaults.
      deployKernel: null,
      deployRamdisk: null,
    };
  }
}
