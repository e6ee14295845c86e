/**
 * What the e2e test and the e2e benchmark share: a testbed with the deploy
 * ramdisk installed as the default (scripts/install-ramdisk.sh), the guest
 * image uploaded and a flavor the machines fit, machines with their disks
 * and BMCs brought to `available` the operator's way (node create, manage,
 * provide), their events, and reading the serial console.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { ImageService, type Image } from '../../proto/gen/bm/v1/image_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, tlsCredentials, type RpcConnection } from '../../proto/rpc/index.ts';
import type { RamdiskManifest } from '../../ramdisk/build.ts';
import { repoRoot, runBmctl } from '../../controller/lab/index.ts';
import { ensureRamdisk, ramdiskCache } from './ensure-ramdisk.ts';
import { buildGuestImage } from './guest-image.ts';
import { NodeEvents } from './node-events.ts';
import { serialLogOf, startQemuBmc, type MachineSpec, type QemuBmc } from './qemu-machine.ts';
import { startTestbed, type Testbed } from './testbed.ts';

const run = promisify(execFile);

export interface E2e {
  readonly bed: Testbed;
  readonly api: RpcConnection;
  readonly env: Readonly<Record<string, string>>;
  readonly ramdisk: RamdiskManifest;
  readonly guestImage: Image;
  /** A flavor every machine newMachine() makes with 1 CPU and 1024 MiB fits. */
  readonly flavor: string;
  /** A scratch directory (user data files). */
  readonly dir: string;
  bmctl(args: readonly string[], timeoutMs?: number): Promise<string>;
  close(): Promise<void>;
}

export async function setUpE2e(options: { readonly discovery: boolean }): Promise<E2e> {
  const ramdisk = await ensureRamdisk();
  const bed = await startTestbed({ discovery: options.discovery, deployKernel: 'e2e-deploy-kernel', deployRamdisk: 'e2e-deploy-ramdisk' });
  let api: RpcConnection | null = null;
  const close = async (): Promise<void> => {
    api?.close();
    await bed.close();
  };
  try {
    // The testbed's controller has a CA of its own (its certificate also names 10.99.0.1, where the VMs dial it).
    const env = { BM_URL: bed.apiUrl, BM_TOKEN: bed.adminToken, BM_CA: bed.caFile };
    api = connect(bed.apiUrl, {
      metadata: { authorization: `Bearer ${bed.adminToken}` },
      credentials: tlsCredentials(await readFile(bed.caFile)),
    });
    const bmctl = async (args: readonly string[], timeoutMs = 120_000): Promise<string> => {
      const r = await runBmctl(args, env, timeoutMs);
      if (r.code !== 0)
        throw new Error(
          `bmctl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}${r.stdout.trim() ? `\n${r.stdout.trim().slice(-3000)}` : ''}`,
        );
      return r.stdout;
    };
    // The README's way to make the build the default deploy kernel and ramdisk.
    await run(path.join(repoRoot, 'scripts/install-ramdisk.sh'), ['e2e-deploy-kernel', 'e2e-deploy-ramdisk'], {
      env: { ...process.env, ...env },
      timeout: 300_000,
    }).catch((error: unknown) => {
      throw new Error(`scripts/install-ramdisk.sh failed: ${(error as { stderr?: string }).stderr ?? String(error)}`);
    });
    const guest = await buildGuestImage(bed.dir, ramdiskCache);
    await bmctl(['image', 'create', guest.qcow2, '--name', 'e2e-guest', '--disk-format', 'qcow2']);
    const guestImage = await api.client(ImageService).getImage({ id: 'e2e-guest' });
    const flavor = 'e2e-small';
    await bmctl(['flavor', 'create', flavor, '--ram', '1024', '--disk', '1', '--cpus', '1', '--arch', 'x86_64']);
    return { bed, api, env, ramdisk, guestImage, flavor, dir: bed.dir, bmctl, close };
  } catch (error) {
    await close();
    throw error;
  }
}

export async function newMachine(
  bed: Testbed,
  name: string,
  mac: string,
  diskBytes: number,
  memoryMb: number,
  cpus: number,
): Promise<MachineSpec> {
  const dir = path.join(bed.dir, name);
  await mkdir(dir, { recursive: true });
  const disk = path.join(dir, 'disk.raw');
  const handle = await open(disk, 'w');
  await handle.truncate(diskBytes);
  await handle.close();
  return { name, mac, tap: await bed.addTap(), disk, diskBytes, memoryMb, cpus, dir };
}

export interface EnrolledMachine {
  readonly bmc: QemuBmc;
  readonly nodeUuid: string;
  /** The node's events from its enrollment on (bmctl watch). */
  readonly events: NodeEvents;
  stop(): Promise<void>;
}

/** Enrolls the machine with its ipmi_sim BMC, starts watching its events, and verifies the BMC (manage). */
export async function enrollWithBmc(e: E2e, machine: MachineSpec): Promise<EnrolledMachine> {
  const bmc = await startQemuBmc(e.bed.ns, machine, `e2e-${randomBytes(6).toString('hex')}`);
  let events: NodeEvents | null = null;
  try {
    await e.bmctl([
      'node',
      'create',
      '--name',
      machine.name,
      '--pm-address',
      bmc.address,
      '--pm-port',
      String(bmc.port),
      '--pm-user',
      bmc.user,
      '--pm-password',
      bmc.password,
      '--cpus',
      String(machine.cpus),
      '--memory-mb',
      String(machine.memoryMb),
      '--disk-gb',
      String(Math.floor(machine.diskBytes / 2 ** 30)),
      '--arch',
      'x86_64',
      '--mac',
      machine.mac,
    ]);
    // An update that changes nothing publishes node.updated: how the watch shows it is live.
    events = await NodeEvents.start(e.env, machine.name, () => e.bmctl(['node', 'update', machine.name, '--cpus', String(machine.cpus)]));
    await e.bmctl(['node', 'manage', machine.name, '--wait', '--timeout', '60'], 90_000);
    const nodeUuid = (await e.api.client(NodeService).getNode({ id: machine.name })).uuid;
    const watching = events;
    return {
      bmc,
      nodeUuid,
      events: watching,
      async stop() {
        await watching.stop();
        await bmc.stop();
      },
    };
  } catch (error) {
    await events?.stop();
    await bmc.stop();
    throw error;
  }
}

/** `node provide --wait`: the conductor PXE-boots the ramdisk, the agent erases, power off, available. */
export async function provide(e: E2e, machine: MachineSpec): Promise<void> {
  const out = JSON.parse(await e.bmctl(['--json', 'node', 'provide', machine.name, '--wait', '--timeout', '900'], 960_000)) as {
    provisionState: string;
    lastError: string;
  };
  if (out.provisionState !== 'available') throw new Error(`node provide left ${machine.name} ${out.provisionState}: ${out.lastError}`);
}

/** The serial console so far, from byte `from` on, with the line's CR LF made LF. */
export async function serialText(machine: MachineSpec, from = 0): Promise<string> {
  return (await readFile(serialLogOf(machine), 'latin1').catch(() => '')).slice(from).replace(/\r/g, '');
}

export async function serialLength(machine: MachineSpec): Promise<number> {
  return (await readFile(serialLogOf(machine), 'latin1').catch(() => '')).length;
}

export async function waitForSerial(machine: MachineSpec, pattern: RegExp, ms: number, from = 0): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = await serialText(machine, from);
    if (pattern.test(text)) return text;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${pattern} on the serial console`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Runs a step; a failure carries the machine's serial log and the controller's log. */
export async function step<T>(e: E2e, machine: MachineSpec, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(
      `${what}: ${message}\n--- serial log of ${machine.name} (tail) ---\n${(await serialText(machine)).slice(-6000)}\n--- controller log (tail) ---\n${e.bed.controllerLog().slice(-6000)}`,
      { cause: error },
    );
  }
}

/**
 * Notes when each pattern first appears on the serial console (wall clock,
 * performance.now()), polling every 100 ms: the guest's own uptime stamps
 * say nothing about the firmware's time before the kernel.
 */
export function watchSerial(
  machine: MachineSpec,
  patterns: Readonly<Record<string, RegExp>>,
  from: number,
): { seen: Record<string, number>; stop(): void } {
  const seen: Record<string, number> = {};
  const timer = setInterval(() => {
    void serialText(machine, from).then((text) => {
      const now = performance.now();
      for (const [name, pattern] of Object.entries(patterns)) if (seen[name] === undefined && pattern.test(text)) seen[name] = now;
    });
  }, 100);
  return { seen, stop: () => clearInterval(timer) };
}
