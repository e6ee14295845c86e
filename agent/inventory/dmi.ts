/**
 * DMI (SMBIOS) identity from /sys/class/dmi/id. Machines without SMBIOS
 * (many arm64 boards) have no such directory: every field is then ''.
 * `product_serial` is readable by root only; the agent runs as root, a test
 * may not, and then the serial is ''.
 */
import { readTrimmed, under } from './sysfs.ts';
import type { DmiInventory } from './types.ts';

export async function readDmi(root: string): Promise<DmiInventory> {
  const dir = under(root, 'sys/class/dmi/id');
  const [vendor, product, serial] = await Promise.all(
    ['sys_vendor', 'product_name', 'product_serial'].map(async (file) => (await readTrimmed(under(dir, file))) ?? ''),
  );
  return { vendor: vendor ?? '', product: product ?? '', serial: serial ?? '' };
}
