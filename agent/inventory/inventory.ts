/**
 * The machine's whole inventory, read from /proc and /sys below `root`
 * ('/' by default; tests point it at fixture trees captured from machines).
 */
import { readCpu } from './cpu.ts';
import { readDisks } from './disks.ts';
import { readDmi } from './dmi.ts';
import { readMemoryBytes } from './memory.ts';
import { readNics } from './nics.ts';
import { exists, under } from './sysfs.ts';
import type { BootMode, Inventory, InventoryOptions } from './types.ts';

/** The kernel creates /sys/firmware/efi only when it was booted by UEFI firmware. */
export async function readBootMode(root: string): Promise<BootMode> {
  return (await exists(under(root, 'sys/firmware/efi'))) ? 'uefi' : 'bios';
}

export async function readInventory(options: InventoryOptions = {}): Promise<Inventory> {
  const root = options.root ?? '/';
  const [cpu, memoryBytes, disks, nics, dmi, bootMode] = await Promise.all([
    readCpu(root),
    readMemoryBytes(root),
    readDisks(root),
    readNics(root),
    readDmi(root),
    readBootMode(root),
  ]);
  return { cpu, memoryBytes, disks, nics, dmi, bootMode };
}
