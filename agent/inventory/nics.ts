/**
 * NICs from /sys/class/net. Physical interfaces have a `device` link to
 * their bus device; bridges, bonds, veths, tunnels and `lo` do not, and are
 * left out (the controller enrols ports by the MACs of real NICs).
 * `speed` reads -1 or fails with EINVAL when the link is down or the driver
 * does not know (virtio); both become 0. `carrier` also fails on an
 * interface that is administratively down, then `operstate` decides.
 */
import { exists, listDir, readInteger, readTrimmed, under } from './sysfs.ts';
import type { NicInventory } from './types.ts';

async function readNic(netDir: string, name: string): Promise<NicInventory | undefined> {
  const dir = under(netDir, name);
  if (name === 'lo' || !(await exists(under(dir, 'device')))) return undefined;
  const mac = ((await readTrimmed(under(dir, 'address'))) ?? '').toLowerCase();
  const speed = await readInteger(under(dir, 'speed'));
  const carrier = await readInteger(under(dir, 'carrier'));
  const link = carrier === undefined ? (await readTrimmed(under(dir, 'operstate'))) === 'up' : carrier === 1;
  return { name, mac, speedMbps: speed !== undefined && speed > 0 ? speed : 0, link };
}

export async function readNics(root: string): Promise<NicInventory[]> {
  const netDir = under(root, 'sys/class/net');
  const nics: NicInventory[] = [];
  for (const name of await listDir(netDir)) {
    const nic = await readNic(netDir, name);
    if (nic) nics.push(nic);
  }
  return nics;
}
