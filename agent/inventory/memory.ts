/** Memory from /proc/meminfo's MemTotal (kB there means KiB). */
import { InventoryError } from '../errors.ts';
import { readTrimmed, under } from './sysfs.ts';

export function parseMemTotalBytes(meminfo: string): number | undefined {
  const match = /^MemTotal:\s+(\d+)\s*kB$/m.exec(meminfo);
  return match?.[1] === undefined ? undefined : Number(match[1]) * 1024;
}

export async function readMemoryBytes(root: string): Promise<number> {
  const path = under(root, 'proc/meminfo');
  const text = await readTrimmed(path);
  const bytes = text === undefined ? undefined : parseMemTotalBytes(text);
  if (bytes === undefined) throw new InventoryError(`cannot read MemTotal from ${path}`, { path });
  return bytes;
}
