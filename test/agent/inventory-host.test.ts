import { cpus, totalmem } from 'node:os';
import { describe, expect, it } from 'vitest';
import { readInventory } from '../../agent/inventory/inventory.ts';

describe("inventory of this machine's own /proc and /sys", () => {
  it('reports plausible hardware', async () => {
    const inventory = await readInventory();
    expect(inventory.cpu.count).toBe(cpus().length);
    expect(inventory.cpu.arch).toMatch(/^(x86_64|aarch64|ppc64le|s390x|riscv64)$/);
    expect(inventory.cpu.flags.length).toBeGreaterThan(0);
    expect(inventory.memoryBytes).toBe(totalmem());
    for (const disk of inventory.disks) {
      expect(disk.sizeBytes).toBeGreaterThan(0);
      expect(disk.sizeBytes % 512).toBe(0);
      expect(disk.name).not.toMatch(/^(loop|ram|zram|dm-)/);
    }
    for (const nic of inventory.nics) {
      expect(nic.name).not.toBe('lo');
      expect(nic.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    }
    expect(['bios', 'uefi']).toContain(inventory.bootMode);
  });
});
