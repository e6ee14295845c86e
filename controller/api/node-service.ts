/** NodeService: thin handlers that validate shape and hand over to enrollment. */
import type { ServiceHandlers } from '../../proto/rpc/index.ts';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { ValidationError } from '../errors.ts';
import {
  type Enrollment,
  type NodeStore,
  type PowerDriverName,
  DEFAULT_GROUP,
  DEFAULT_PM_PORT,
  DEFAULT_POWER_DRIVER,
  isUuid,
} from '../nodes/index.ts';
import type { NodeActions } from '../conductor/index.ts';
import { nodeMessage } from './convert.ts';
import { pageLimit, pageMarker } from './paging.ts';

export function nodeHandlers(
  enrollment: Enrollment,
  store: NodeStore,
  /** Power, boot device and provision verbs: run here or at the node's owner (conductor/node-router.ts). */
  actions: NodeActions,
  diagnose: (id: string) => Promise<Record<string, unknown>>,
): ServiceHandlers<typeof NodeService> {
  return {
    async createNode(req) {
      const node = await enrollment.createNode({
        name: req.name === '' ? null : req.name,
        group: req.group === '' ? DEFAULT_GROUP : req.group,
        cpus: req.cpus,
        memoryMb: req.memoryMb,
        localGb: req.localGb,
        cpuArch: req.cpuArch,
        pmAddress: req.pmAddress,
        pmPort: req.pmPort === 0 ? DEFAULT_PM_PORT : req.pmPort,
        pmUser: req.pmUser,
        pmPassword: req.pmPassword,
        mac: req.mac,
        powerDriver: (req.powerDriver === '' ? DEFAULT_POWER_DRIVER : req.powerDriver) as PowerDriverName,
        properties: req.properties,
        resourceClass: req.resourceClass,
      });
      return nodeMessage(node);
    },
    async getNode(req) {
      return nodeMessage(await enrollment.getNode(req.id));
    },
    async listNodes(req) {
      let associated: boolean | string | undefined;
      if (req.associated === 'true') associated = true;
      else if (req.associated === 'false') associated = false;
      else if (req.associated !== '') {
        if (!isUuid(req.associated)) throw new ValidationError('associated', 'must be true, false or an instance uuid');
        associated = req.associated;
      }
      if (req.provisionState.length > 32) throw new ValidationError('provision_state', 'at most 32 characters');
      if (req.group.length > 64) throw new ValidationError('group', 'at most 64 characters');
      const page = await store.listNodes(
        {
          ...(req.provisionState ? { provisionState: req.provisionState } : {}),
          ...(req.group ? { group: req.group } : {}),
          ...(req.maintenance !== undefined ? { maintenance: req.maintenance } : {}),
          ...(associated !== undefined ? { associated } : {}),
        },
        pageLimit(req.limit),
        pageMarker(req.marker),
      );
      return { nodes: page.items.map(nodeMessage), nextMarker: page.nextMarker ?? '' };
    },
    async updateNode(req) {
      const node = await enrollment.updateNode(
        req.id,
        {
          ...(req.name !== undefined ? { name: req.name === '' ? null : req.name } : {}),
          ...(req.group !== undefined ? { group: req.group } : {}),
          ...(req.cpus !== undefined ? { cpus: req.cpus } : {}),
          ...(req.memoryMb !== undefined ? { memoryMb: req.memoryMb } : {}),
          ...(req.localGb !== undefined ? { localGb: req.localGb } : {}),
          ...(req.cpuArch !== undefined ? { cpuArch: req.cpuArch } : {}),
          ...(req.pmAddress !== undefined ? { pmAddress: req.pmAddress } : {}),
          ...(req.pmPort !== undefined ? { pmPort: req.pmPort } : {}),
          ...(req.pmUser !== undefined ? { pmUser: req.pmUser } : {}),
          ...(req.pmPassword !== undefined ? { pmPassword: req.pmPassword } : {}),
          ...(req.maintenance !== undefined ? { maintenance: req.maintenance } : {}),
          ...(req.maintenanceReason !== undefined ? { maintenanceReason: req.maintenanceReason } : {}),
          ...(Object.keys(req.properties).length > 0 ? { properties: req.properties } : {}),
          ...(req.powerDriver !== undefined ? { powerDriver: req.powerDriver } : {}),
          ...(req.resourceClass !== undefined ? { resourceClass: req.resourceClass } : {}),
        },
        req.expectedVersion === 0n ? null : Number(req.expectedVersion),
      );
      return nodeMessage(node);
    },
    async deleteNode(req) {
      await enrollment.deleteNode(req.id);
      return {};
    },
    async setPowerState(req) {
      return nodeMessage(await actions.setPowerState(req.id, req.target));
    },
    async getPowerState(req) {
      return { powerState: await actions.powerState(req.id) };
    },
    async setBootDevice(req) {
      return actions.setBootDevice(req.id, req.device, req.persistent, req.uefi);
    },
    async getBootDevice(req) {
      return actions.bootDevice(req.id);
    },
    async provision(req) {
      return nodeMessage(await actions.provision(req.id, req.verb));
    },
    async diagnose(req) {
      return { reportJson: JSON.stringify(await diagnose(req.id)) };
    },
  };
}
