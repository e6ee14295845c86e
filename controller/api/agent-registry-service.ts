/**
 * AgentRegistry: called by deploy agents with their per-operation token (not
 * an admin token), except Register, which a machine never seen calls without.
 */
import type { ServiceHandlers } from '../../proto/rpc/index.ts';
import { AgentRegistry as AgentRegistryService } from '../../proto/gen/bm/v1/agent_registry_pb.js';
import type { AgentRegistry } from '../agents/index.ts';
import { bearerToken } from '../auth/index.ts';

export const AGENT_REGISTRY_PREFIX = '/bm.v1.AgentRegistry/';

export function agentRegistryHandlers(registry: AgentRegistry): ServiceHandlers<typeof AgentRegistryService> {
  return {
    async lookup(req, ctx) {
      const { node, action } = await registry.lookup(req.macs, bearerToken(ctx));
      return { nodeUuid: node.uuid, provisionState: node.provisionState, action };
    },
    async register(req) {
      const node = await registry.register(req.inventory);
      return { nodeUuid: node.uuid };
    },
    async heartbeat(req, ctx) {
      return { action: await registry.heartbeat(req.nodeUuid, req.agentAddress, bearerToken(ctx), ctx.peer) };
    },
  };
}
