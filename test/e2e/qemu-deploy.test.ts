/**
 * The whole chain on a QEMU machine, with real processes only: the machine
 * PXE boots (SeaBIOS, the iPXE ROM) through the controller's DHCP, HTTP iPXE
 * script and the deploy ramdisk (uploaded as aki/ari images and set as the
 * default deploy kernel and ramdisk); the agent in it looks itself up; the
 * image streams onto the machine's disk with a config drive; the native IPMI
 * driver sets boot-from-disk through ipmi_sim and power-cycles it; the image
 * boots and prints its marker and the user data on the serial console. Then
 * a delete erases the disk's metadata. An unknown machine, with discovery
 * on, registers itself with the inventory QEMU gave it.
 * Any failed step fails with the machine's serial log and the controller's log.
 */
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { stopChild } from '../boot/netns.ts';
import { driveDeploy, driveUndeploy } from './drive-deploy.ts';
import { GUEST_MARKER } from './guest-image.ts';
import { startUnmanagedMachine, type QemuBmc } from './qemu-machine.ts';
import { driveContextFor, enrollWithBmc, newMachine, serialLength, serialText, setUpE2e, step, waitForSerial, type E2e } from './scenario.ts';

const MIB = 1024 * 1024;
let e: E2e;

beforeAll(async () => {
  e = await setUpE2e({ discovery: true });
}, 900_000);

afterAll(async () => {
  await e?.close();
}, 60_000);

describe('a QEMU machine, end to end', () => {
  it('PXE boots the ramdisk, gets the image and config drive, boots the image with its user data, and is erased on delete', { timeout: 600_000 }, async () => {
    const machine = await newMachine(e.bed, 'e2e-node1', '52:54:00:e2:e0:01', 1024 * MIB, 1024, 1);
    let bmc: QemuBmc | null = null;
    try {
      const enrolled = await step(e, machine, 'enroll and manage (the native IPMI driver verifies ipmi_sim)', () => enrollWithBmc(e, machine));
      bmc = enrolled.bmc;
      const nodeUuid = enrolled.nodeUuid;
      const ctx = driveContextFor(e, machine, nodeUuid);
      const userData = `#cloud-config\n# e2e user data ${randomBytes(8).toString('hex')}\n`;
      await step(e, machine, 'deploy', () => driveDeploy(ctx, { image: e.guestImage, format: 'qcow2', userData, metaData: { uuid: nodeUuid, hostname: machine.name, name: machine.name } }));
      const atReboot = await serialLength(machine);
      const booted = await step(e, machine, 'the image boots from disk', () => waitForSerial(machine, new RegExp(`${GUEST_MARKER}-DONE`), 180_000, atReboot));
      expect(booted).toContain(GUEST_MARKER);
      expect(booted).toMatch(/config-2 found at \d+ MiB/);
      expect(booted).toContain(userData.trim());
      expect(booted).toMatch(new RegExp(`"uuid": ?"${nodeUuid}"`));
      // The BMC saw the boot devices the deploy asked for: network first, then the disk.
      expect((await bmc.powerLog()).match(/boot \w+/g)).toEqual(['boot pxe', 'boot default']);
      const ramdiskBoot = (await serialText(machine)).slice(0, atReboot);
      expect(ramdiskBoot).toMatch(/ramdisk: \[[\d.]+\] DHCP lease 10\.99\.0\.\d+\/24 on eth0/);
      // The iPXE script named the NIC it booted from, and the init took DHCP on that one.
      expect(ramdiskBoot).toMatch(/ramdisk: \[[\d.]+\] DHCP on eth0 \(BOOTIF 52:54:00:e2:e0:01\)/);
      expect(ramdiskBoot).not.toMatch(/bm\.token=/);

      const atDelete = await serialLength(machine);
      await step(e, machine, 'delete (erase the disk metadata)', () => driveUndeploy(ctx));
      expect((await e.api.client(NodeService).getNode({ id: nodeUuid })).provisionState).toBe('available');
      expect(await serialText(machine, atDelete)).toMatch(/ramdisk: \[[\d.]+\] starting the agent/);
      // Erased: the MBR (boot code and partition table) reads as zeros.
      const head = Buffer.alloc(512);
      const disk = await open(machine.disk, 'r');
      await disk.read(head, 0, 512, 0);
      await disk.close();
      expect(head.every((b) => b === 0)).toBe(true);
    } finally {
      await bmc?.stop();
    }
  });

  it('an unknown machine PXE boots the ramdisk and registers itself with the inventory QEMU gave it', { timeout: 300_000 }, async () => {
    const mac = '52:54:00:e2:e0:02';
    const machine = await newMachine(e.bed, 'stranger', mac, 3 * 1024 * MIB, 1024, 2);
    const vm = startUnmanagedMachine(e.bed.ns, machine);
    try {
      const node = await step(e, machine, 'auto-registration', async () => {
        const deadline = Date.now() + 240_000;
        for (;;) {
          const { nodes } = await e.api.client(NodeService).listNodes({});
          const found = nodes.find((n) => n.macs.includes(mac));
          if (found) return found;
          if (vm.exitCode !== null) throw new Error(`QEMU exited with ${vm.exitCode}`);
          if (Date.now() > deadline) throw new Error('the machine did not register within 240 s');
          await new Promise((r) => setTimeout(r, 1000));
        }
      });
      expect(node.provisionState).toBe('enroll');
      expect(node.properties.discovered).toBe('true');
      expect(node.cpus).toBe(2);
      expect(node.localGb).toBe(3);
      expect(node.properties.disks).toMatch(/vda:3221225472/);
      // MemTotal: what QEMU's 1024 MiB leaves after the kernel's own reservations.
      expect(node.memoryMb).toBeGreaterThan(800);
      expect(node.memoryMb).toBeLessThanOrEqual(1024);
      expect(node.cpuArch).toBe('x86_64');
    } finally {
      await stopChild(vm, 'SIGKILL');
    }
  });
});
