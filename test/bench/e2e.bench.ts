/**
 * The deploy chain on a QEMU machine under TCG (test/e2e), timed phase by
 * phase from the IPMI power-on: iPXE's DHCP, the ramdisk's kernel and
 * initrd over HTTP, the ramdisk's own DHCP, the agent's callback, the image
 * written (64 MiB whole-disk image, qcow2), and the image booted from disk
 * after the power cycle. The deploy is `bmctl boot --wait` on a node made
 * available by `node manage` and `node provide`; power-on, callback, image
 * written and power cycle are the controller's events (bmctl watch), the
 * rest the serial console's lines. Also the ramdisk's size (gzip and
 * unpacked) and the agent's memory inside the VM, as the init prints it on
 * the serial console.
 *
 * The peer: the same kernel and initramfs booted directly by QEMU
 * (-kernel/-initrd, QEMU's user-mode DHCP), no firmware, no PXE, no
 * download: the lower bound the PXE chain adds to.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stopChild } from '../boot/netns.ts';
import { requirePeer } from '../boot/peers.ts';
import { driveDeploy } from '../e2e/drive-deploy.ts';
import { ensureRamdisk } from '../e2e/ensure-ramdisk.ts';
import { GUEST_MARKER } from '../e2e/guest-image.ts';
import {
  enrollWithBmc,
  newMachine,
  provide,
  serialLength,
  serialText,
  setUpE2e,
  waitForSerial,
  watchSerial,
  type E2e,
  type EnrolledMachine,
} from '../e2e/scenario.ts';
import { goal, type BenchContext, type BenchReport } from './harness.ts';

const MIB = 1024 * 1024;
const s = (ms: number | undefined): number | null => (ms === undefined ? null : Math.round(ms / 100) / 10);

const RAMDISK_LINES = {
  ipxeDhcp: /net0: 10\.99\.0\.\d+\/255/,
  kernelFetched: /e2e-deploy-kernel\.\.\.[^\n]*ok/,
  initrdFetched: /e2e-deploy-ramdisk\.\.\.[^\n]*ok/,
  initStarted: /ramdisk: \[[\d.]+\] init started/,
  modulesLoaded: /ramdisk: \[[\d.]+\] loaded \d+ kernel modules/,
  ramdiskDhcp: /ramdisk: \[[\d.]+\] DHCP lease/,
  agentStarted: /ramdisk: \[[\d.]+\] starting the agent/,
  agentListening: /"msg":"listening"/,
} as const;

function uptimeOf(text: string, pattern: RegExp): number | null {
  const line = text.split('\n').find((l) => pattern.test(l));
  const m = line ? /ramdisk: \[([\d.]+)\]/.exec(line) : null;
  return m ? Number(m[1]) : null;
}

/** The last "agent memory" line: rss and peak in MiB. */
function agentMemory(text: string): { rssMiB: number; peakMiB: number } | null {
  const all = [...text.matchAll(/agent memory: rss (\d+) kB, peak (\d+) kB/g)];
  const last = all.at(-1);
  return last ? { rssMiB: Math.round(Number(last[1]) / 102.4) / 10, peakMiB: Math.round(Number(last[2]) / 102.4) / 10 } : null;
}

/** The peer: QEMU boots the kernel and initramfs itself. */
async function directBoot(kernel: string, initrd: string, log: (m: string) => void): Promise<Record<string, number | null>> {
  const qemu = requirePeer('/usr/bin/qemu-system-x86_64');
  const dir = await mkdtemp(path.join(tmpdir(), 'bm-e2e-bench-'));
  const serial = path.join(dir, 'serial.log');
  const started = performance.now();
  const vm = spawn(
    qemu,
    [
      '-accel',
      'tcg',
      '-machine',
      'pc',
      '-m',
      '1024',
      '-smp',
      '1',
      '-nographic',
      '-monitor',
      'none',
      '-no-user-config',
      '-nodefaults',
      '-serial',
      `file:${serial}`,
      '-no-reboot',
      '-kernel',
      kernel,
      '-initrd',
      initrd,
      '-append',
      'console=ttyS0 quiet',
      '-netdev',
      'user,id=n0',
      '-device',
      'virtio-net-pci,netdev=n0',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const seen: Record<string, number> = {};
  try {
    const deadline = Date.now() + 180_000;
    let text = '';
    while (seen.agentListening === undefined) {
      if (Date.now() > deadline) throw new Error(`the directly booted ramdisk did not start its agent within 180 s: ${text.slice(-2000)}`);
      if (vm.exitCode !== null) throw new Error(`QEMU exited with ${vm.exitCode}: ${text.slice(-2000)}`);
      text = (await readFile(serial, 'latin1').catch(() => '')).replace(/\r/g, '');
      const now = performance.now();
      for (const [name, pattern] of Object.entries(RAMDISK_LINES))
        if (seen[name] === undefined && pattern.test(text)) seen[name] = now - started;
      await new Promise((r) => setTimeout(r, 100));
    }
    log(`direct boot: agent listening ${s(seen.agentListening)} s after QEMU started`);
    return {
      direct_start_to_init_s: s(seen.initStarted),
      direct_start_to_dhcp_s: s(seen.ramdiskDhcp),
      direct_start_to_agent_listening_s: s(seen.agentListening),
      direct_guest_uptime_at_init_s: uptimeOf(text, RAMDISK_LINES.initStarted),
      direct_guest_uptime_at_modules_loaded_s: uptimeOf(text, RAMDISK_LINES.modulesLoaded),
      direct_guest_uptime_at_agent_start_s: uptimeOf(text, RAMDISK_LINES.agentStarted),
    };
  } finally {
    await stopChild(vm, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

export default async function e2eBench(ctx: BenchContext): Promise<BenchReport> {
  const buildStarted = performance.now();
  const ramdisk = await ensureRamdisk();
  const results: Record<string, unknown> = {
    ramdisk_built_now: ramdisk.built,
    ...(ramdisk.built ? { ramdisk_build_s: s(performance.now() - buildStarted) } : {}),
    kernel: ramdisk.kernelVersion,
    kernel_mib: Math.round((ramdisk.kernel.bytes / MIB) * 10) / 10,
    initrd_gzip_mib: Math.round((ramdisk.initrd.bytes / MIB) * 10) / 10,
    initrd_unpacked_mib: Math.round((ramdisk.initrd.uncompressedBytes / MIB) * 10) / 10,
    initrd_modules: ramdisk.modules.length,
    initrd_sha256: ramdisk.initrd.sha256,
  };
  ctx.log(`ramdisk ${results.initrd_gzip_mib} MiB gzip, ${results.initrd_unpacked_mib} MiB unpacked`);
  Object.assign(results, await directBoot(ramdisk.kernelFile, ramdisk.initrdFile, ctx.log));

  let e: E2e | null = null;
  let node: EnrolledMachine | null = null;
  try {
    e = await setUpE2e({ discovery: false });
    const machine = await newMachine(e.bed, 'bench-node', '52:54:00:be:0c:01', 1024 * MIB, 1024, 1);
    node = await enrollWithBmc(e, machine);
    const provideStarted = performance.now();
    await provide(e, machine);
    results.provide_s = s(performance.now() - provideStarted);
    const atBoot = await serialLength(machine);
    const watch = watchSerial(machine, RAMDISK_LINES, atBoot);
    const { phases } = await driveDeploy(e, node.events, {
      name: 'bench-vm',
      flavor: e.flavor,
      image: 'e2e-guest',
      userData: '#cloud-config\n',
    }).finally(() => watch.stop());
    const guest = await waitForSerial(machine, new RegExp(`${GUEST_MARKER}-DONE`), 300_000, atBoot);
    const booted = performance.now();
    const ramdiskText = guest.slice(0, guest.indexOf(`${GUEST_MARKER} on `));
    const on = phases['power-on'];
    const since = (t: number | undefined): number | null => (t === undefined ? null : s(t - on));
    Object.assign(results, {
      power_on_to_ipxe_dhcp_s: since(watch.seen.ipxeDhcp),
      power_on_to_kernel_fetched_s: since(watch.seen.kernelFetched),
      power_on_to_initrd_fetched_s: since(watch.seen.initrdFetched),
      power_on_to_ramdisk_init_s: since(watch.seen.initStarted),
      power_on_to_ramdisk_dhcp_s: since(watch.seen.ramdiskDhcp),
      power_on_to_agent_started_s: since(watch.seen.agentStarted),
      power_on_to_agent_callback_s: since(phases['agent-callback']),
      power_on_to_image_written_s: since(phases['image-written']),
      image_write_s: s(phases['image-written'] - phases['agent-callback']),
      image_bytes: Number(e.guestImage.virtualSize),
      power_cycle_to_image_booted_s: s(booted - phases.rebooted),
      power_on_to_image_booted_s: s(booted - on),
      guest_uptime_at_init_s: uptimeOf(ramdiskText, RAMDISK_LINES.initStarted),
      guest_uptime_at_modules_loaded_s: uptimeOf(ramdiskText, RAMDISK_LINES.modulesLoaded),
      guest_uptime_at_agent_start_s: uptimeOf(ramdiskText, RAMDISK_LINES.agentStarted),
      agent_rss_mib: agentMemory(ramdiskText)?.rssMiB ?? null,
      agent_peak_rss_mib: agentMemory(ramdiskText)?.peakMiB ?? null,
    });
    const direct = results.direct_start_to_agent_listening_s as number | null;
    const pxeListening = since(watch.seen.agentListening);
    results.power_on_to_agent_listening_s = pxeListening;
    results.pxe_vs_direct_agent_listening_ratio = direct && pxeListening ? Math.round((pxeListening / direct) * 100) / 100 : null;
    ctx.log(
      `power on -> agent callback ${results.power_on_to_agent_callback_s} s, -> image booted ${results.power_on_to_image_booted_s} s`,
    );
  } finally {
    await node?.stop();
    await e?.close();
  }
  return {
    results,
    goals: [
      goal('power on -> agent callback on TCG (s)', results.power_on_to_agent_callback_s as number | null, '<=', 60),
      goal('initramfs gzip size (MiB)', results.initrd_gzip_mib as number, '<=', 60),
    ],
  };
}
