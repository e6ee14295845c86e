import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readInventory } from '../../agent/inventory/inventory.ts';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}/`, import.meta.url));

describe('inventory from fixture trees', () => {
  it('reads a UEFI server with two NVMe, a SATA SSD and an HDD, and two ports', async () => {
    const inventory = await readInventory({ root: fixture('server-nvme-sata') });
    expect(inventory.cpu).toMatchObject({ count: 8, model: 'Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz', arch: 'x86_64' });
    expect(inventory.cpu.flags).toContain('avx512f');
    expect(inventory.memoryBytes).toBe(196588152 * 1024);
    expect(inventory.bootMode).toBe('uefi');
    expect(inventory.dmi).toEqual({ vendor: 'Supermicro', product: 'SYS-1029P-WTR', serial: 'S351827X9A12345' });
    expect(inventory.disks).toEqual([
      {
        name: 'nvme0n1',
        path: '/dev/nvme0n1',
        sizeBytes: 3750748848 * 512,
        model: 'SAMSUNG MZQL23T8HCLS-00A07',
        serial: 'S64HNE0T102340',
        wwn: 'eui.36434830540102340025384500000001',
        rotational: false,
      },
      {
        name: 'nvme1n1',
        path: '/dev/nvme1n1',
        sizeBytes: 3750748848 * 512,
        model: 'SAMSUNG MZQL23T8HCLS-00A07',
        serial: 'S64HNE0T102341',
        wwn: 'eui.36434830540102340025384500000002',
        rotational: false,
      },
      {
        name: 'sda',
        path: '/dev/sda',
        sizeBytes: 937703088 * 512,
        model: 'SAMSUNG MZ7LH480',
        serial: 'S45PNA0M812345',
        wwn: '0x5002538e40a1b2c3',
        rotational: false,
      },
      {
        name: 'sdb',
        path: '/dev/sdb',
        sizeBytes: 7814037168 * 512,
        model: 'ST4000NM0035-1V4',
        serial: 'ZC18ABCD',
        wwn: '0x5000c500b1c2d3e4',
        rotational: true,
      },
    ]);
    expect(inventory.nics).toEqual([
      { name: 'eno1', mac: '3c:ec:ef:1a:2b:3c', speedMbps: 10000, link: true },
      { name: 'eno2', mac: '3c:ec:ef:1a:2b:3d', speedMbps: 0, link: false },
    ]);
  });

  it('reads a q35 VM with a virtio disk whose serial sits on the block device', async () => {
    const inventory = await readInventory({ root: fixture('qemu-uefi-virtio') });
    expect(inventory.cpu).toMatchObject({ count: 2, model: 'Intel Xeon Processor (Cascadelake)', arch: 'x86_64' });
    expect(inventory.memoryBytes).toBe(4013412 * 1024);
    expect(inventory.bootMode).toBe('uefi');
    expect(inventory.dmi).toEqual({ vendor: 'QEMU', product: 'Standard PC (Q35 + ICH9, 2009)', serial: '' });
    expect(inventory.disks).toEqual([
      { name: 'vda', path: '/dev/vda', sizeBytes: 20 * 1024 ** 3, model: '', serial: 'bm-root-0001', wwn: '', rotational: true },
    ]);
    expect(inventory.nics).toEqual([{ name: 'enp1s0', mac: '52:54:00:12:34:56', speedMbps: 0, link: true }]);
  });

  it('takes the architecture from cpuinfo when the tree has no /proc/sys/kernel/arch, and skips hidden multipath nodes', async () => {
    const inventory = await readInventory({ root: fixture('arm64-nvme') });
    expect(inventory.cpu).toEqual({ count: 4, model: '', arch: 'aarch64', flags: expect.arrayContaining(['asimd', 'atomics']) });
    expect(inventory.dmi).toEqual({ vendor: '', product: '', serial: '' });
    expect(inventory.disks.map((disk) => disk.name)).toEqual(['nvme0n1']);
    expect(inventory.nics).toEqual([{ name: 'enP2p1s0', mac: '0c:42:a1:00:11:22', speedMbps: 25000, link: true }]);
  });
});
