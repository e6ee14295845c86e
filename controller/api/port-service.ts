/** PortService: thin handlers over enrollment. */
import type { ServiceHandlers } from '../../proto/rpc/index.ts';
import { PortService } from '../../proto/gen/bm/v1/port_pb.js';
import type { Enrollment, NodeStore } from '../nodes/index.ts';
import { portMessage } from './convert.ts';
import { pageLimit, pageMarker } from './paging.ts';

export function portHandlers(enrollment: Enrollment, store: NodeStore): ServiceHandlers<typeof PortService> {
  return {
    async createPort(req) {
      return portMessage(await enrollment.addPort(req.nodeId, req.mac));
    },
    async listPorts(req) {
      const nodeUuid = req.nodeId === '' ? null : (await enrollment.getNode(req.nodeId)).uuid;
      const page = await store.listPorts(nodeUuid, pageLimit(req.limit), pageMarker(req.marker));
      return { ports: page.items.map(portMessage), nextMarker: page.nextMarker ?? '' };
    },
    async deletePort(req) {
      await enrollment.deletePort(req.id);
      return {};
    },
  };
}
