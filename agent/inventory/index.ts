/** The public face of agent/inventory/: what other folders import (scripts/check-imports.ts). */
export { normaliseWwn, readDisks } from './disks.ts';
export { readInventory } from './inventory.ts';
export { readInteger, under } from './sysfs.ts';
export type { DiskInventory, Inventory } from './types.ts';
