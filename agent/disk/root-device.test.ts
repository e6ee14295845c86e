import { describe, expect, it } from 'vitest';
import { DiskTooSmallError, InvalidHintError, NoMatchingDiskError } from '../errors.ts';
import type { DiskInventory } from '../inventory/types.ts';
import { selectRootDisk } from './root-device.ts';

const GIB = 1024 ** 3;
const disk = (name: string, gib: number, extra: Partial<DiskInventory> = {}): DiskInventory => ({
  name,
  path: `/dev/${name}`,
  sizeBytes: gib * GIB + 12345 * 512,
  model: '',
  serial: '',
  wwn: '',
  rotational: false,
  ...extra,
});
const disks = [
  disk('sdb', 3726, { model: 'ST4000NM0035-1V4', serial: 'ZC18ABCD', wwn: '0x5000c500b1c2d3e4', rotational: true }),
  disk('nvme0n1', 1788, { model: 'SAMSUNG MZQL23T8HCLS-00A07', serial: 'S64HNE0T102340', wwn: 'eui.3643' }),
  disk('sda', 447, { model: 'SAMSUNG MZ7LH480', serial: 'S45PNA0M812345', wwn: '0x5002538e40a1b2c3' }),
  disk('nvme1n1', 1788, { model: 'SAMSUNG MZQL23T8HCLS-00A07', serial: 'S64HNE0T102341' }),
];

describe('root device selection', () => {
  it('without hints picks the smallest disk large enough for the image', () => {
    expect(selectRootDisk(disks, 10 * GIB).name).toBe('sda');
    expect(selectRootDisk(disks, 500 * GIB).name).toBe('nvme0n1');
  });

  it('honours size hints with operators, in whole GiB', () => {
    expect(selectRootDisk(disks, GIB, { size: '>= 1000' }).name).toBe('nvme0n1');
    expect(selectRootDisk(disks, GIB, { size: '> 1788' }).name).toBe('sdb');
    expect(selectRootDisk(disks, GIB, { size: 447 }).name).toBe('sda');
    expect(selectRootDisk(disks, GIB, { size: '!= 447' }).name).toBe('nvme0n1');
    expect(selectRootDisk(disks, GIB, { size: '<= 447' }).name).toBe('sda');
  });

  it('matches serial, wwn, model and name regardless of case and spelling', () => {
    expect(selectRootDisk(disks, GIB, { serial: 's64hne0t102341' }).name).toBe('nvme1n1');
    expect(selectRootDisk(disks, GIB, { wwn: 'naa.5000C500B1C2D3E4' }).name).toBe('sdb');
    expect(selectRootDisk(disks, GIB, { model: '<in> MZ7LH' }).name).toBe('sda');
    expect(selectRootDisk(disks, GIB, { name: '/dev/nvme1n1' }).name).toBe('nvme1n1');
    expect(selectRootDisk(disks, GIB, { rotational: 'true' }).name).toBe('sdb');
    expect(selectRootDisk(disks, GIB, { model: 's== samsung mzql23t8hcls-00a07', size: 1788 }).name).toBe('nvme0n1');
  });

  it('refuses when nothing matches, when matches are too small, and when a hint is unreadable', () => {
    expect(() => selectRootDisk(disks, GIB, { serial: 'nope' })).toThrow(NoMatchingDiskError);
    expect(() => selectRootDisk([], GIB)).toThrow(/no usable disk/);
    const tooSmall = (() => {
      try {
        selectRootDisk(disks, 500 * GIB, { name: 'sda' });
      } catch (error) {
        return error;
      }
      return undefined;
    })();
    expect(tooSmall).toBeInstanceOf(DiskTooSmallError);
    expect((tooSmall as DiskTooSmallError).context).toMatchObject({ device: '/dev/sda', imageSize: 500 * GIB });
    expect(() => selectRootDisk(disks, GIB, { size: '>= ten' })).toThrow(InvalidHintError);
    expect(() => selectRootDisk(disks, GIB, { rotational: 'maybe' })).toThrow(InvalidHintError);
    expect(() => selectRootDisk(disks, GIB, { serial: '  ' })).toThrow(InvalidHintError);
  });
});
