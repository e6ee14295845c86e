/**
 * Inspection: boot the ramdisk, read the agent's inventory, record the
 * hardware the node really has (CPUs, RAM, the largest disk, arch) and any
 * MAC it has that no port holds yet, power off, back to manageable.
 */
import type { Inventory } from '../../../proto/gen/bm/agent/v1/inventory_pb.js';
import { normalizeMac, type NodeStore, uuidv7, CPU_ARCHES } from '../../nodes/index.ts';
import type { AgentBoot } from '../agent-boot.ts';
import type { TaskContext } from '../task.ts';

/** Matches node validation's limit: a machine with more NICs than this is a data error, not hardware. */
const MAX_PORTS = 64;

export interface InspectedHardware {
  readonly cpus: number;
  readonly memoryMb: number;
  readonly localGb: number;
  readonly cpuArch: string | null;
  readonly macs: readonly string[];
}

/** What the inventory says, clamped to what node validation accepts. */
export function hardwareOf(inventory: Inventory): InspectedHardware {
  const largest = inventory.disks.reduce((max, d) => (d.sizeBytes > max ? d.sizeBytes : max), 0n);
  const arch = inventory.cpu?.arch ?? '';
  const macs: string[] = [];
  for (const nic of inventory.nics) {
    try {
      macs.push(normalizeMac(nic.mac, 'mac'));
    } catch {
      // Virtual or odd interfaces (no MAC, infiniband) are not PXE ports.
    }
  }
  return {
    cpus: Math.max(1, Math.min(4096, inventory.cpu?.count ?? 1)),
    memoryMb: Math.max(1, Math.min(64 * 1024 * 1024, Number(inventory.memoryBytes / 1048576n))),
    localGb: Math.max(1, Math.min(1_000_000, Number(largest / 1073741824n))),
    cpuArch: (CPU_ARCHES as readonly string[]).includes(arch) ? arch : null,
    macs: [...new Set(macs)],
  };
}

export async function inspectSteps(boot: AgentBoot, store: NodeStore, ctx: TaskContext): Promise<InspectedHardware> {
  const since = await boot.bootRamdisk(ctx, 'inspect');
  await ctx.advance('wait');
  const agent = await boot.waitForAgent(ctx, since);
  let inventory: Inventory;
  try {
    inventory = await boot.withAgent(agent, (a) => a.client.getInventory({}, { timeoutMs: 60_000 }));
  } finally {
    boot.closeAgent(agent);
  }
  const hw = hardwareOf(inventory);
  const node = ctx.node();
  await store.updateNode(
    node.uuid,
    { cpus: hw.cpus, memoryMb: hw.memoryMb, localGb: hw.localGb, ...(hw.cpuArch ? { cpuArch: hw.cpuArch } : {}) },
    null,
  );
  let ports = node.macs.length;
  for (const mac of hw.macs) {
    if (node.macs.includes(mac) || ports >= MAX_PORTS) continue;
    // A MAC another node already holds stays there: inspection never moves ports between nodes.
    const taken = await store.findPort(mac);
    if (taken) continue;
    await store.createPort({ uuid: uuidv7(), nodeUuid: node.uuid, mac });
    ports++;
  }
  await ctx.refresh();
  ctx.publish('inspect.recorded', {
    cpus: String(hw.cpus),
    memory_mb: String(hw.memoryMb),
    local_gb: String(hw.localGb),
    cpu_arch: hw.cpuArch ?? '',
    macs: hw.macs.join(','),
  });
  await boot.powerOff(ctx);
  return hw;
}
