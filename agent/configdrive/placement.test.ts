import { describe, expect, it } from 'vitest';
import { ConfigDriveError } from '../errors.ts';
import { detectPartitionTable, gptBackupBytes, MBR_LIMIT_BYTES, MIB, placeConfigDrive } from './placement.ts';

function mbr(types: number[]): Uint8Array {
  const bytes = new Uint8Array(1024);
  types.forEach((type, i) => (bytes[446 + i * 16 + 4] = type));
  bytes[510] = 0x55;
  bytes[511] = 0xaa;
  return bytes;
}

describe('config drive placement', () => {
  it('recognises GPT, MBR and no partition table', () => {
    const gpt = mbr([0xee]);
    gpt.set(new TextEncoder().encode('EFI PART'), 512);
    expect(detectPartitionTable(gpt)).toBe('gpt');
    expect(detectPartitionTable(mbr([0xee]))).toBe('gpt');
    expect(detectPartitionTable(mbr([0x83, 0x82]))).toBe('mbr');
    expect(detectPartitionTable(new Uint8Array(1024))).toBe('none');
    const gpt4k = new Uint8Array(8192);
    gpt4k.set(new TextEncoder().encode('EFI PART'), 4096);
    expect(detectPartitionTable(gpt4k, 4096)).toBe('gpt');
  });

  it('puts the drive at the disk end minus its size, rounded down to 1 MiB', () => {
    const diskSize = 10 * 1024 * MIB + 3 * 512;
    expect(placeConfigDrive({ diskSize, imageSize: 2 * 1024 * MIB, driveSize: 70_000, partitionTable: 'none' })).toEqual({
      offset: 10 * 1024 * MIB - MIB,
      length: 70_000,
      regionEnd: diskSize,
    });
  });

  it('keeps clear of the backup GPT and of the MBR 2 TiB limit', () => {
    const diskSize = 10 * 1024 * MIB;
    const gpt = placeConfigDrive({ diskSize, imageSize: 0, driveSize: MIB, partitionTable: 'gpt' });
    expect(gpt.regionEnd).toBe(diskSize - 33 * 512);
    expect(gpt.offset + MIB).toBeLessThanOrEqual(gpt.regionEnd);
    expect(gpt.offset).toBe(diskSize - 2 * MIB);
    expect(gptBackupBytes(4096)).toBe(5 * 4096);
    const big = placeConfigDrive({ diskSize: 4 * MBR_LIMIT_BYTES, imageSize: 0, driveSize: MIB, partitionTable: 'mbr' });
    expect(big.offset).toBe(MBR_LIMIT_BYTES - MIB);
  });

  it('refuses a drive over 64 MiB, and one that would overlap the image', () => {
    expect(() => placeConfigDrive({ diskSize: 1024 * MIB, imageSize: 0, driveSize: 65 * MIB, partitionTable: 'none' })).toThrow(
      ConfigDriveError,
    );
    expect(() => placeConfigDrive({ diskSize: 100 * MIB, imageSize: 99 * MIB + 1, driveSize: MIB / 2, partitionTable: 'none' })).toThrow(
      /no room/,
    );
  });
});
