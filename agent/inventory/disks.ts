/**
 * Disks from /sys/block. Every entry there is a whole block device; the ones
 * an image must never go to are left out:
 * - loop, ram, zram, nbd: memory- or file-backed, not the machine's disks;
 * - dm-*, md*: device-mapper and software RAID built on top of real disks
 *   (deploying to them would need the stack assembled again on boot);
 * - sr*, fd*: optical and floppy drives;
 * - `removable` = 1: USB sticks and the BMC's virtual media, which the
 *   machine will not have after the deploy;
 * - `hidden` = 1: the per-path nodes of NVMe multipath (nvme0c0n1);
 * - size 0: a card reader or tray with nothing in it.
 * `size` is in 512-byte units whatever the logical block size is
 * (Documentation/ABI/stable/sysfs-block).
 */
import { listDir, readBytes, readInteger, readTrimmed, under } from './sysfs.ts';
import type { DiskInventory } from './types.ts';

const SKIPPED_NAME = /^(loop|ram|zram|nbd|dm-|md|sr|fd)\d*/;

/** The serial in a SCSI VPD page 0x80 (Unit Serial Number): a 4-byte header, then ASCII. */
export function parseVpdPage80(page: Uint8Array): string | undefined {
  if (page.length < 4 || page[1] !== 0x80) return undefined;
  const length = ((page[2] ?? 0) << 8) | (page[3] ?? 0);
  const serial = new TextDecoder('latin1').decode(page.subarray(4, 4 + length));
  return serial.replace(/\0+$/, '').trim() || undefined;
}

/**
 * `wwid` as the kernel shows it (`naa.5000c500a1b2c3d4`, `eui.0025388…`,
 * `t10.ATA …`). NAA names become `0x…` as udev's ID_WWN and Ironic's hints
 * spell them; the others stay as they are.
 */
export function normaliseWwn(wwid: string | undefined): string {
  if (!wwid) return '';
  const naa = /^naa\.([0-9a-f]+)$/i.exec(wwid);
  return naa?.[1] ? `0x${naa[1].toLowerCase()}` : wwid;
}

async function readDisk(blockDir: string, name: string): Promise<DiskInventory | undefined> {
  const dir = under(blockDir, name);
  if ((await readInteger(under(dir, 'removable'))) === 1) return undefined;
  if ((await readInteger(under(dir, 'hidden'))) === 1) return undefined;
  const sectors = await readInteger(under(dir, 'size'));
  if (!sectors || sectors <= 0) return undefined;
  const vpdPage = await readBytes(under(dir, 'device/vpd_pg80'));
  const serial =
    (await readTrimmed(under(dir, 'device/serial'))) ||
    (await readTrimmed(under(dir, 'serial'))) ||
    (vpdPage ? parseVpdPage80(vpdPage) : undefined) ||
    '';
  const wwid = (await readTrimmed(under(dir, 'wwid'))) || (await readTrimmed(under(dir, 'device/wwid')));
  return {
    name,
    path: `/dev/${name}`,
    sizeBytes: sectors * 512,
    model: (await readTrimmed(under(dir, 'device/model'))) ?? '',
    serial,
    wwn: normaliseWwn(wwid),
    rotational: (await readInteger(under(dir, 'queue/rotational'))) === 1,
  };
}

export async function readDisks(root: string): Promise<DiskInventory[]> {
  const blockDir = under(root, 'sys/block');
  const disks: DiskInventory[] = [];
  for (const name of await listDir(blockDir)) {
    if (SKIPPED_NAME.test(name)) continue;
    const disk = await readDisk(blockDir, name);
    if (disk) disks.push(disk);
  }
  return disks;
}
