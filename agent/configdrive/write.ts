/**
 * Writes a built config drive to the end of a target (see placement.ts for
 * where, and for what is left out), made durable with fdatasync.
 */
import { readFully, writeFully, type Target } from '../disk/index.ts';
import { detectPartitionTable, placeConfigDrive, type Placement } from './placement.ts';

/** Enough of the disk's start to see an MBR and a GPT header with 512-byte or 4 KiB sectors. */
const PROBE_BYTES = 8192;

export async function writeConfigDrive(target: Target, drive: Uint8Array, imageSize: number, sectorSize = 512): Promise<Placement> {
  const head = new Uint8Array(Math.min(PROBE_BYTES, target.size));
  await readFully(target.handle, head, 0);
  const placement = placeConfigDrive({
    diskSize: target.size,
    imageSize,
    driveSize: drive.length,
    partitionTable: detectPartitionTable(head, sectorSize),
    sectorSize,
  });
  await writeFully(target.handle, drive, placement.offset);
  await target.handle.datasync();
  return placement;
}
