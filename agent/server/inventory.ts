/** GetInventory: the hardware as read from /proc and /sys, in wire form. */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { InventorySchema } from '../../proto/gen/bm/agent/v1/inventory_pb.js';
import { readInventory, type Inventory } from '../inventory/index.ts';
import type { AgentContext } from './context.ts';

export type WireInventory = MessageInitShape<typeof InventorySchema>;

export function toWireInventory(inventory: Inventory): WireInventory {
  return {
    cpu: { ...inventory.cpu, flags: [...inventory.cpu.flags] },
    memoryBytes: BigInt(inventory.memoryBytes),
    disks: inventory.disks.map((disk) => ({
      name: disk.name,
      sizeBytes: BigInt(disk.sizeBytes),
      model: disk.model,
      serial: disk.serial,
      wwn: disk.wwn,
      rotational: disk.rotational,
    })),
    nics: inventory.nics.map((nic) => ({ ...nic })),
    dmi: { ...inventory.dmi },
    bootMode: inventory.bootMode,
  };
}

export function inventoryHandler(ctx: AgentContext): () => Promise<WireInventory> {
  return async () => toWireInventory(await readInventory({ root: ctx.config.root }));
}
