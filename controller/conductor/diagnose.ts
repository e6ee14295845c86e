/**
 * `bmctl node diagnose`: the seed's bug-report script as one call. Everything
 * an operator attaches to a report about one node: the node row (BMC password
 * only as "set"), its instance, who holds its lock and when that controller
 * last heartbeated, its ports and DHCP leases, the iPXE script it would get
 * now (token masked, and without handing one out), and its recent events.
 */
import { inArray } from 'drizzle-orm';
import { type Database, controllers, dhcpLeases } from '../../db/index.ts';
import { planBoot, type BootPlanConfig, type BootStateSource, intToIp, renderIpxeScript } from '../boot/index.ts';
import { NotFoundError } from '../errors.ts';
import type { RecentEvents } from '../events/index.ts';
import type { InstanceStore } from '../instances/index.ts';
import type { NodeStore } from '../nodes/index.ts';

export interface DiagnoseDeps {
  readonly db: Database;
  readonly nodes: NodeStore;
  readonly instances: InstanceStore;
  readonly events: RecentEvents;
  readonly controllerId: string;
  /** Present when this controller serves network boot. */
  readonly boot?: { readonly states: BootStateSource; readonly plan: BootPlanConfig };
}

const MASK = '********';

export async function diagnoseNode(deps: DiagnoseDeps, id: string): Promise<Record<string, unknown>> {
  const node = await deps.nodes.findNode(id);
  if (!node) throw new NotFoundError('node', id.slice(0, 255));
  const instance = node.instanceUuid ? await deps.instances.find(node.instanceUuid, null) : null;
  const owner = node.reservation
    ? (
        await deps.db
          .select()
          .from(controllers)
          .where(inArray(controllers.id, [node.reservation]))
      )[0]
    : undefined;
  const leases =
    node.macs.length > 0
      ? await deps.db
          .select()
          .from(dhcpLeases)
          .where(inArray(dhcpLeases.mac, [...node.macs]))
      : [];
  let script: string | null = null;
  if (deps.boot) {
    // The script as the node would get it, with any token masked; never delivers the armed one.
    for (const mac of node.macs.slice(0, 1)) {
      const state = await deps.boot.states.bootStateFor(mac, { peek: true });
      const plan = planBoot(state, deps.boot.plan);
      script = plan ? renderIpxeScript(plan).replace(/bm\.token=\S+/, `bm.token=${MASK}`) : null;
    }
  }
  return {
    generatedAt: new Date().toISOString(),
    generatedBy: deps.controllerId,
    node: {
      uuid: node.uuid,
      name: node.name,
      group: node.group,
      provisionState: node.provisionState,
      powerState: node.powerState,
      maintenance: node.maintenance,
      maintenanceReason: node.maintenanceReason,
      lastError: node.lastError,
      hardware: {
        cpus: node.cpus,
        memoryMb: node.memoryMb,
        localGb: node.localGb,
        cpuArch: node.cpuArch,
        resourceClass: node.resourceClass,
      },
      bmc: {
        driver: node.powerDriver,
        address: node.pmAddress,
        port: node.pmPort,
        user: node.pmUser,
        password: node.pmPasswordSet ? MASK : '(not set)',
      },
      powerSyncFailures: node.powerSyncFailures,
      agent: { address: node.agentAddress, lastSeen: node.agentSeenAt?.toISOString() ?? null },
      reservation: node.reservation,
      version: node.version,
      properties: node.properties,
      createdAt: node.createdAt.toISOString(),
      updatedAt: node.updatedAt.toISOString(),
    },
    owner: owner ? { id: owner.id, hostname: owner.hostname, api: owner.apiAddress, heartbeatAt: owner.heartbeatAt.toISOString() } : null,
    instance: instance
      ? {
          uuid: instance.uuid,
          name: instance.name,
          project: instance.project,
          state: instance.state,
          progress: instance.progress,
          address: instance.address,
          lastError: instance.lastError,
          flavor: instance.flavorUuid,
          image: instance.imageUuid,
          userDataBytes: instance.userData?.length ?? 0,
          network: instance.network,
        }
      : null,
    ports: node.macs,
    leases: leases.map((l) => ({ ip: intToIp(l.ip), mac: l.mac, state: l.state, expiresAt: l.expiresAt.toISOString() })),
    bootScript: script,
    recentEvents: deps.events.of(node.uuid),
  };
}
