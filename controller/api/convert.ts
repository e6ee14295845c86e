/** Records to API messages. The BMC password has no field to go into. */
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { NodeSchema, type Node } from '../../proto/gen/bm/v1/node_pb.js';
import { PortSchema, type Port } from '../../proto/gen/bm/v1/port_pb.js';
import type { NodeRecord, PortRecord } from '../nodes/index.ts';

export function nodeMessage(n: NodeRecord): Node {
  return create(NodeSchema, {
    uuid: n.uuid,
    name: n.name ?? '',
    group: n.group,
    cpus: n.cpus,
    memoryMb: n.memoryMb,
    localGb: n.localGb,
    cpuArch: n.cpuArch,
    pmAddress: n.pmAddress,
    pmPort: n.pmPort,
    pmUser: n.pmUser,
    pmPasswordSet: n.pmPasswordSet,
    powerDriver: n.powerDriver,
    provisionState: n.provisionState,
    powerState: n.powerState,
    maintenance: n.maintenance,
    maintenanceReason: n.maintenanceReason ?? '',
    instanceUuid: n.instanceUuid ?? '',
    lastError: n.lastError ?? '',
    macs: [...n.macs],
    properties: { ...n.properties },
    version: BigInt(n.version),
    powerSyncFailures: n.powerSyncFailures,
    resourceClass: n.resourceClass,
    createdAt: timestampFromDate(n.createdAt),
    updatedAt: timestampFromDate(n.updatedAt),
  });
}

export function portMessage(p: PortRecord): Port {
  return create(PortSchema, { uuid: p.uuid, nodeUuid: p.nodeUuid, mac: p.mac, createdAt: timestampFromDate(p.createdAt) });
}
