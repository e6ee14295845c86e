/**
 * What the e2e test and the e2e benchmark share: a testbed with the deploy
 * ramdisk installed as the default (scripts/install-ramdisk.sh) and the
 * guest image uploaded, machines with their disks and BMCs, the drive
 * context for drive-deploy.ts, and reading the serial console.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { ImageService, type Image } from '../../proto/gen/bm/v1/image_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import type { RamdiskManifest } from '../../ramdisk/build.ts';
import type { DriveContext, Phase } from './drive-deploy.ts';
import { ensureRamdisk, ramdiskCache } from './ensure-ramdisk.ts';
import { buildGuestImage } from './guest-image.ts';
import { pcapOf, serialLogOf, startQemuBmc, type MachineSpec, type QemuBmc } from './qemu-machine.ts';
import { lastAgentTokenOnWire, startTestbed, type Testbed } from './testbed.ts';
import { repoRoot, runBmctl } from '../../controller/lab/index.ts';

const run = promisify(execFile);

export interface E2e {
  readonly bed: Testbed;
  readonly api: RpcConnection;
  readonly db: DbHandle;
  readonly env: Readonly<Record<string, string>>;
  readonly ramdisk: RamdiskManifest;
  readonly guestImage: Image;
  bmctl(args: readonly string[], timeoutMs?: number): Promise<string>;
  close(): Promise<void>;
}

export async function setUpE2e(options: { readonly discovery: boolean }): Promise<E2e> {
  const ramdisk = await ensureRamdisk();
  const bed = await startTestbed({ discovery: options.discovery, deployKernel: 'e2e-deploy-kernel', deployRamdisk: 'e2e-deploy-ramdisk' });
  let api: RpcConnection | null = null;
  let db: DbHandle | null = null;
  const close = async (): Promise<void> => {
    api?.close();
    await db?.close();
    await bed.close();
  };
  try {
    const env = { BM_URL: bed.apiUrl, BM_TOKEN: bed.adminToken };
    api = connect(bed.apiUrl, { metadata: { authorization: `Bearer ${bed.adminToken}` } });
    db = await openDatabase(bed.databaseUrl, { connectionLimit: 2 });
    const bmctl = async (args: readonly string[], timeoutMs = 120_000): Promise<string> => {
      const r = await runBmctl(args, env, timeoutMs);
      if (r.code !== 0) throw new Error(`bmctl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
      return r.stdout;
    };
    // The README's way to make the build the default deploy kernel and ramdisk.
    await run(path.join(repoRoot, 'scripts/install-ramdisk.sh'), ['e2e-deploy-kernel', 'e2e-deploy-ramdisk'], { env: { ...process.env, ...env }, timeout: 300_000 }).catch((error: unknown) => {
      throw new Error(`scripts/install-ramdisk.sh failed: ${(error as { stderr?: string }).stderr ?? String(error)}`);
    });
    const guest = await buildGuestImage(bed.dir, ramdiskCache);
    await bmctl(['image', 'create', guest.qcow2, '--name', 'e2e-guest', '--disk-format', 'qcow2']);
    const guestImage = await api.client(ImageService).getImage({ id: 'e2e-guest' });
    return { bed, api, db, env, ramdisk, guestImage, bmctl, close };
  } catch (error) {
    await close();
    throw error;
  }
}

export async function newMachine(bed: Testbed, name: string, mac: string, diskBytes: number, memoryMb: number, cpus: number): Promise<MachineSpec> {
  const dir = path.join(bed.dir, name);
  await mkdir(dir, { recursive: true });
  const disk = path.join(dir, 'disk.raw');
  const handle = await open(disk, 'w');
  await handle.truncate(diskBytes);
  await handle.close();
  return { name, mac, tap: await bed.addTap(), disk, memoryMb, cpus, dir };
}

/** Enrolls the machine with its ipmi_sim BMC and verifies the BMC (manage). */
export async function enrollWithBmc(e: E2e, machine: MachineSpec): Promise<{ bmc: QemuBmc; nodeUuid: string }> {
  const bmc = await startQemuBmc(e.bed.ns, machine, `e2e-${randomBytes(6).toString('hex')}`);
  try {
    await e.bmctl(['node', 'create', '--name', machine.name, '--pm-address', bmc.address, '--pm-port', String(bmc.port), '--pm-user', bmc.user, '--pm-password', bmc.password, '--cpus', String(machine.cpus), '--memory-mb', String(machine.memoryMb), '--disk-gb', '1', '--arch', 'x86_64', '--mac', machine.mac]);
    await e.bmctl(['node', 'manage', machine.name, '--wait', '--timeout', '60'], 90_000);
    return { bmc, nodeUuid: (await e.api.client(NodeService).getNode({ id: machine.name })).uuid };
  } catch (error) {
    await bmc.stop();
    throw error;
  }
}

export function driveContextFor(e: E2e, machine: MachineSpec, nodeUuid: string, onPhase?: (phase: Phase) => void): DriveContext {
  return {
    api: e.api,
    db: e.db,
    nodeUuid,
    imageStore: path.join(e.bed.dir, 'images'),
    agentToken: () => lastAgentTokenOnWire(pcapOf(machine)),
    reach: (address: string) => {
      const at = address.lastIndexOf(':');
      return e.bed.tunnel.reach(address.slice(0, at), Number(address.slice(at + 1)));
    },
    ...(onPhase ? { onPhase } : {}),
  };
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
    throw new Error(`${what}: ${message}\n--- serial log of ${machine.name} (tail) ---\n${(await serialText(machine)).slice(-6000)}\n--- controller log (tail) ---\n${e.bed.controllerLog().slice(-6000)}`, { cause: error });
  }
}

/**
 * Notes when each pattern first appears on the serial console (wall clock,
 * performance.now()), polling every 100 ms: the guest's own uptime stamps
 * say nothing about the firmware's time before the kernel.
 */
export function watchSerial(machine: MachineSpec, patterns: Readonly<Record<string, RegExp>>, from: number): { seen: Record<string, number>; stop(): void } {
  const seen: Record<string, number> = {};
  const timer = setInterval(() => {
    void serialText(machine, from).then((text) => {
      const now = performance.now();
      for (const [name, pattern] of Object.entries(patterns)) if (seen[name] === undefined && pattern.test(text)) seen[name] = now;
    });
  }, 100);
  return { seen, stop: () => clearInterval(timer) };
}
