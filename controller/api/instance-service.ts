/** InstanceService: thin handlers; the caller's project scopes every call (instances/manager.ts). */
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceHandlers } from '../../proto/rpc/index.ts';
import { InstanceSchema, InstanceService, type Instance } from '../../proto/gen/bm/v1/instance_pb.js';
import { callerOf } from '../auth/index.ts';
import type { InstanceManager, InstanceRecord } from '../instances/index.ts';
import type { NodeStore, NodeRecord } from '../nodes/index.ts';

/** `known`: the instance's node when the caller already holds it (a boot's claim), saving a read. */
async function instanceMessage(i: InstanceRecord, nodes: NodeStore, known?: NodeRecord): Promise<Instance> {
  const node = known ?? (i.nodeUuid ? await nodes.findNode(i.nodeUuid) : null);
  return create(InstanceSchema, {
    uuid: i.uuid,
    name: i.name,
    project: i.project,
    flavorUuid: i.flavorUuid,
    imageUuid: i.imageUuid,
    nodeUuid: i.nodeUuid ?? '',
    state: i.state,
    progress: i.progress,
    address: i.address ?? '',
    lastError: i.lastError ?? '',
    sshKeys: [...i.sshKeys],
    network: {
      mode: i.network.mode,
      address: i.network.address ?? '',
      netmask: i.network.netmask ?? '',
      gateway: i.network.gateway ?? '',
      dns: [...(i.network.dns ?? [])],
    },
    nodeProvisionState: node?.provisionState ?? '',
    powerState: node?.powerState ?? '',
    createdAt: timestampFromDate(i.createdAt),
    updatedAt: timestampFromDate(i.updatedAt),
  });
}

export function instanceHandlers(instances: InstanceManager, nodes: NodeStore): ServiceHandlers<typeof InstanceService> {
  return {
    async createInstance(req, ctx) {
      const { instance, node } = await instances.boot(callerOf(ctx), {
        name: req.name,
        flavor: req.flavor,
        image: req.image,
        userData: req.userData,
        sshKeys: req.sshKeys,
        ...(req.network ? { network: req.network } : {}),
      });
      return instanceMessage(instance, nodes, node);
    },
    async getInstance(req, ctx) {
      return instanceMessage(await instances.get(callerOf(ctx), req.id), nodes);
    },
    async listInstances(req, ctx) {
      const list = await instances.list(callerOf(ctx), req.project);
      return { instances: await Promise.all(list.map((i) => instanceMessage(i, nodes))) };
    },
    async deleteInstance(req, ctx) {
      return instanceMessage(await instances.delete(callerOf(ctx), req.id), nodes);
    },
    async rebootInstance(req, ctx) {
      return instanceMessage(await instances.reboot(callerOf(ctx), req.id, req.hard), nodes);
    },
    async setInstancePower(req, ctx) {
      return instanceMessage(await instances.setPower(callerOf(ctx), req.id, req.target), nodes);
    },
  };
}
