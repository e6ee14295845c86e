/**
 * Where the config drive goes: at the end of the disk, as Ironic puts it.
 *
 * Ironic gives the config drive its own partition of at most 64 MiB at the
 * end of the disk (ironic-lib's create_config_drive_partition): with GPT, a
 * new partition after moving the backup GPT to the disk's end; with MBR, a
 * new primary partition if one of the four is free, kept below 2 TiB (the
 * most an MBR entry can address with 512-byte sectors); with no partition
 * table, the drive is dd'ed to the last 64 MiB.
 *
 * What this module does: it recognises the partition table in the disk's
 * first sectors and computes the offset: the end of the usable region (the
 * disk's end; before the backup GPT header and entries with GPT; at most
 * 2 TiB with MBR) minus the drive's size, rounded down to 1 MiB, and refuses
 * a drive that would overlap the image or exceed 64 MiB.
 *
 * What it leaves out: writing the partition entry itself (relocating the
 * backup GPT to the disk's end and adding an entry with fresh CRC32s, or an
 * MBR entry). Without the entry, blkid finds the drive only if nothing else
 * claims that region: cloud-init's search by label works on a disk without
 * a partition table, not yet after a whole-disk image with GPT or MBR.
 */
import { ConfigDriveError } from '../errors.ts';

export const MIB = 1024 * 1024;
export const CONFIG_DRIVE_MAX_BYTES = 64 * MIB;
/** The largest disk offset an MBR entry reaches with 512-byte sectors: 2^32 sectors. */
export const MBR_LIMIT_BYTES = 2 ** 32 * 512;

export type PartitionTableKind = 'gpt' | 'mbr' | 'none';

const EFI_PART = [0x45, 0x46, 0x49, 0x20, 0x50, 0x41, 0x52, 0x54]; // "EFI PART"

function hasEfiSignature(bytes: Uint8Array, at: number): boolean {
  return EFI_PART.every((byte, i) => bytes[at + i] === byte);
}

/**
 * The kind of partition table in the disk's first sectors (at least two
 * logical sectors: the MBR and the GPT header in LBA 1).
 */
export function detectPartitionTable(firstSectors: Uint8Array, sectorSize = 512): PartitionTableKind {
  const hasMbrSignature = firstSectors[510] === 0x55 && firstSectors[511] === 0xaa;
  if (hasEfiSignature(firstSectors, sectorSize)) return 'gpt';
  if (!hasMbrSignature) return 'none';
  for (let entry = 0; entry < 4; entry++) {
    const type = firstSectors[446 + entry * 16 + 4];
    if (type === 0xee) return 'gpt'; // protective MBR whose GPT header we did not see
    if (type !== 0) return 'mbr';
  }
  // A boot sector signature with no partitions is an MBR with room for all four.
  return 'mbr';
}

export interface PlacementInput {
  readonly diskSize: number;
  /** End of the deployed image: the drive must not start before it. */
  readonly imageSize: number;
  readonly driveSize: number;
  readonly partitionTable: PartitionTableKind;
  readonly sectorSize?: number;
}

export interface Placement {
  readonly offset: number;
  readonly length: number;
  /** End of the region the drive was placed in (where the GPT backup or the MBR limit begins). */
  readonly regionEnd: number;
}

/** Backup GPT at the disk's end: 128 entries of 128 bytes, then the header in the last LBA. */
export function gptBackupBytes(sectorSize: number): number {
  return (Math.ceil((128 * 128) / sectorSize) + 1) * sectorSize;
}

export function placeConfigDrive(input: PlacementInput): Placement {
  const sectorSize = input.sectorSize ?? 512;
  if (input.driveSize <= 0 || input.driveSize > CONFIG_DRIVE_MAX_BYTES) {
    throw new ConfigDriveError('out-of-range', `config drive of ${input.driveSize} bytes: it must be between 1 byte and 64 MiB`, {
      driveSize: input.driveSize,
    });
  }
  let regionEnd = input.diskSize;
  if (input.partitionTable === 'gpt') regionEnd -= gptBackupBytes(sectorSize);
  if (input.partitionTable === 'mbr') regionEnd = Math.min(regionEnd, MBR_LIMIT_BYTES);
  const offset = Math.floor((regionEnd - input.driveSize) / MIB) * MIB;
  if (offset < input.imageSize) {
    throw new ConfigDriveError(
      'failed-precondition',
      `no room for a config drive of ${input.driveSize} bytes after an image of ${input.imageSize} bytes on a disk of ${input.diskSize} bytes`,
      {
        diskSize: input.diskSize,
        imageSize: input.imageSize,
        driveSize: input.driveSize,
        offset,
      },
    );
  }
  return { offset, length: input.driveSize, regionEnd };
}
