/**
 * The whole chain on a QEMU machine, with real processes only, driven the
 * way an operator and a tenant do it: bmctl only. The machine is enrolled
 * with its BMC (OpenIPMI's ipmi_sim, powering QEMU), `node manage` verifies
 * it through the native IPMI driver, `node provide` has the conductor
 * PXE-boot it (SeaBIOS, the iPXE ROM, the controller's DHCP and iPXE script)
 * into the deploy ramdisk (uploaded as aki/ari images and the default
 * deploy kernel and ramdisk) whose agent erases the disk; `bmctl boot
 * --wait` has the conductor boot it into the ramdisk again, stream the image
 * with a config drive, set boot-from-disk through ipmi_sim and power-cycle
 * it: the image boots and prints its marker and the user data on the serial
 * console. `bmctl instance delete --wait` erases the disk's metadata and the
 * node is available again. An unknown machine, with discovery on,
 * registers itself with the inventory QEMU gave it.
 * Any failed step fails with the machine's serial log and the controller's log.
 */
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { stopChild } from '../boot/netns.ts';
import { driveDeploy, driveUndeploy } from './drive-deploy.ts';
import { GUEST_MARKER } from './guest-image.ts';
import { startUnmanagedMachine } from './qemu-machine.ts';
import {
  enrollWithBmc,
  newMachine,
  provide,
  serialLength,
  serialText,
  setUpE2e,
  step,
  waitForSerial,
  type E2e,
  type EnrolledMachine,
} from './scenario.ts';

const MIB = 1024 * 1024;
let e: E2e;

beforeAll(async () => {
  e = await setUpE2e({ discovery: true });
}, 900_000);

afterAll(async () => {
  await e?.close();
}, 60_000);

describe('a QEMU machine, end to end', () => {
  it('is provided, boots an instance with its user data through bmctl boot, and is erased and available again after bmctl instance delete', {
    timeout: 1_800_000,
  }, async () => {
    const machine = await newMachine(e.bed, 'e2e-node1', '52:54:00:e2:e0:01', 1024 * MIB, 1024, 1);
    let node: EnrolledMachine | null = null;
    try {
      node = await step(e, machine, 'enroll and manage (the native IPMI driver verifies ipmi_sim)', () => enrollWithBmc(e, machine));
      const { nodeUuid, events, bmc } = node;
      await step(e, machine, 'node provide (cleaning through the PXE-booted agent)', () => provide(e, machine));
      expect(events.find((x) => x.type === 'clean.erased')).toBeDefined();

      const userData = `#cloud-config\n# e2e user data ${randomBytes(8).toString('hex')}\n`;
      const atBoot = await serialLength(machine);
      const { instance } = await step(e, machine, 'bmctl boot --wait', () =>
        driveDeploy(e, events, { name: 'e2e-vm1', flavor: e.flavor, image: 'e2e-guest', userData }),
      );
      expect(instance.nodeUuid).toBe(nodeUuid);
      expect(instance.address).toMatch(/^10\.99\.0\.\d+$/);
      const booted = await step(e, machine, 'the image boots from disk', () =>
        waitForSerial(machine, new RegExp(`${GUEST_MARKER}-DONE`), 300_000, atBoot),
      );
      const cut = booted.indexOf(`${GUEST_MARKER} on `);
      expect(cut).toBeGreaterThan(0);
      const guest = booted.slice(cut);
      expect(guest).toMatch(/config-2 found at \d+ MiB/);
      expect(guest).toContain(userData.trim());
      // meta_data.json names the instance.
      expect(guest).toMatch(new RegExp(`"uuid": ?"${instance.uuid}"`));
      // The BMC saw the boot devices the conductor asked for: network for cleaning and for the deploy, then the disk.
      expect((await bmc.powerLog()).match(/boot \w+/g)).toEqual(['boot pxe', 'boot pxe', 'boot default']);
      const ramdiskBoot = booted.slice(0, cut);
      expect(ramdiskBoot).toMatch(/ramdisk: \[[\d.]+\] DHCP lease 10\.99\.0\.\d+\/24 on eth0/);
      // The iPXE script named the NIC it booted from, and the init took DHCP on that one.
      expect(ramdiskBoot).toMatch(/ramdisk: \[[\d.]+\] DHCP on eth0 \(BOOTIF 52:54:00:e2:e0:01\)/);
      // The agent token travels in the iPXE script and /proc/cmdline, never onto the console.
      expect(await serialText(machine)).not.toMatch(/bm\.token=/);

      const atDelete = await serialLength(machine);
      await step(e, machine, 'bmctl instance delete --wait (erase the disk metadata)', () => driveUndeploy(e, events, 'e2e-vm1'));
      const shown = JSON.parse(await e.bmctl(['--json', 'node', 'show', machine.name])) as {
        provisionState: string;
        instanceUuid: string;
        powerState: string;
      };
      expect(shown.provisionState).toBe('available');
      expect(shown.instanceUuid).toBe('');
      expect(shown.powerState).toBe('off');
      expect(JSON.parse(await e.bmctl(['--json', 'instance', 'list']))).toEqual([]);
      expect(await serialText(machine, atDelete)).toMatch(/ramdisk: \[[\d.]+\] starting the agent/);
      expect((await bmc.powerLog()).match(/boot \w+/g)).toEqual(['boot pxe', 'boot pxe', 'boot default', 'boot pxe']);
      // Erased: the MBR (boot code and partition table) reads as zeros.
      const head = Buffer.alloc(512);
      const disk = await open(machine.disk, 'r');
      await disk.read(head, 0, 512, 0);
      await disk.close();
      expect(head.every((b) => b === 0)).toBe(true);
    } finally {
      await node?.stop();
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
