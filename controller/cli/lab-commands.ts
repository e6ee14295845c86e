/**
 * bmctl lab up|down: a virtual fleet on this machine. `up` starts the lab
 * process in the background (a controller on a database and NATS prefix of
 * its own, and N virtual machines), then does what an operator does, through
 * the API only: upload an image, enroll, manage, provide, create a flavor,
 * boot one instance per machine with live progress. It leaves bmctl pointed
 * at the lab (saved defaults). `down` stops what `up` started, by the PIDs
 * it recorded, and removes the saved defaults. It imports the lab's files
 * one by one rather than controller/lab/index.ts: that face also carries the
 * process starters, which load the database driver bmctl has no use for.
 */
import { spawn } from 'node:child_process';
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import type { Instance } from '../../proto/gen/bm/v1/instance_pb.js';
import { InstanceService } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, tlsCredentials, type RpcConnection } from '../../proto/rpc/index.ts';
import {
  isLabProcess,
  LAB_MAX_NODES,
  labStateDir,
  logFile,
  readLabState,
  stateFile,
  type LabState,
  bootAll,
  createFlavor,
  enroll,
  instanceName,
  provisionAll,
  uploadImage,
  type ProgressListener,
  repoRoot,
  sha256OfFilePrefix,
} from '../lab/index.ts';
import { CliUsageError } from './errors.ts';
import { nodeRow, NODE_HEADERS } from './node-commands.ts';
import { table } from './output.ts';
import { readSavedDefaults, removeSavedDefaults, saveDefaults } from './saved-defaults.ts';

const labProcessPath = path.join(repoRoot, 'controller/lab/lab-process.ts');
const say = (m: string): void => void process.stdout.write(`[lab] ${m}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether any process of the group led by `pgid` is left. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function logTail(dir: string): Promise<string> {
  const text = await readFile(logFile(dir), 'utf8').catch(() => '');
  return text.split('\n').slice(-30).join('\n');
}

/** Starts the lab process detached and waits until it has written its state (or died). */
async function startLabProcess(dir: string, nodes: number, database: string, timeoutMs: number): Promise<LabState> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const log = await open(logFile(dir), 'w', 0o600);
  try {
    const child = spawn(process.execPath, [labProcessPath, '--nodes', String(nodes), '--state-dir', dir, '--database', database], {
      cwd: repoRoot,
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
    });
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new CliUsageError('could not start the lab process');
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const state = await readLabState(dir).catch(() => null);
      if (state && state.pid === pid) return state;
      if (child.exitCode !== null || !alive(pid))
        throw new CliUsageError(`the lab process ended before it was up; its log (${logFile(dir)}):\n${await logTail(dir)}`);
      await sleep(200);
    }
    process.kill(-pid, 'SIGTERM');
    throw new CliUsageError(`the lab was not up within ${timeoutMs / 1000} s; its log (${logFile(dir)}):\n${await logTail(dir)}`);
  } finally {
    await log.close();
  }
}

/** Live progress: one bar per instance on a terminal, otherwise a line whenever an instance's state or tens of percent change. */
function progressView(names: readonly string[]): { listener: ProgressListener; stop(): void } {
  if (process.stdout.isTTY) {
    const multi = new MultiBar(
      { format: '{name} [{bar}] {percentage}% {state}', hideCursor: true, clearOnComplete: false },
      Presets.shades_classic,
    );
    const bars = new Map<string, SingleBar>(names.map((n) => [n, multi.create(100, 0, { name: n, state: 'scheduled' })]));
    return {
      listener: (instances) => {
        for (const i of instances)
          bars.get(i.name)?.update(i.state === 'ACTIVE' ? 100 : i.progress, {
            name: i.name,
            state: i.state === 'BUILD' ? `BUILD (node ${i.nodeProvisionState})` : i.state,
          });
      },
      stop: () => multi.stop(),
    };
  }
  const last = new Map<string, string>();
  return {
    listener: (instances) => {
      for (const i of instances) {
        const shown = `${i.state} ${i.state === 'ACTIVE' ? 100 : Math.floor(i.progress / 10) * 10}% node ${i.nodeProvisionState}`;
        if (last.get(i.name) === shown) continue;
        last.set(i.name, shown);
        process.stdout.write(
          `${i.name} ${i.state} ${i.state === 'ACTIVE' ? 100 : i.progress}% (node ${i.nodeProvisionState})${i.lastError ? ` last_error="${i.lastError}"` : ''}\n`,
        );
      }
    },
    stop: () => undefined,
  };
}

/** The operator's part, through the API only. */
async function operate(conn: RpcConnection, state: LabState, timeoutS: number): Promise<readonly Instance[]> {
  say(`uploading the lab's ${state.image.format} image`);
  const image = await uploadImage(conn, state.image);
  say(`image ${image.uuid}: ${image.size} bytes stored, ${image.virtualSize} bytes of disk`);
  say(`enrolling ${state.machines.length} machine(s) and verifying their BMCs (node create, node manage)`);
  await enroll(conn, state.machines);
  const names = state.machines.map((m) => m.name);
  await provisionAll(conn, names, 'manage', 'manageable', 60_000);
  say('cleaning them into the pool (node provide): each boots the ramdisk, its agent erases the disk');
  await provisionAll(conn, names, 'provide', 'available', 120_000);
  say('creating a flavor and booting one instance per machine (boot)');
  await createFlavor(conn);
  const userData = new TextEncoder().encode('#cloud-config\nruncmd:\n  - echo hello from the lab\n');
  const instanceNames = state.machines.map((_, i) => instanceName(i));
  const view = progressView(instanceNames);
  let outcomes;
  try {
    outcomes = await bootAll(conn, instanceNames, { userData, timeoutMs: timeoutS * 1000, onProgress: view.listener });
  } finally {
    view.stop();
  }
  const failed = outcomes.filter((o) => o.instance.state !== 'ACTIVE');
  if (failed.length > 0)
    throw new CliUsageError(
      `${failed.length} instance(s) ended in ERROR: ${failed.map((o) => `${o.instance.name}: ${o.instance.lastError}`).join('; ')}`,
    );
  say(`${outcomes.length} instance(s) ACTIVE in ${(Math.max(...outcomes.map((o) => o.ms)) / 1000).toFixed(1)} s`);
  // The disks are files of this machine: reading them back checks the whole path, bytes included.
  for (const m of state.machines) {
    const onDisk = await sha256OfFilePrefix(m.disk, Number(image.virtualSize));
    if (onDisk !== image.rawSha256) throw new CliUsageError(`${m.name}: its disk holds ${onDisk}, not the image's ${image.rawSha256}`);
  }
  say('every disk holds the image bytes');
  return outcomes.map((o) => o.instance);
}

async function labDown(dir: string): Promise<string> {
  const state = await readLabState(dir);
  if (!state) return 'no lab is up';
  if ((await isLabProcess(state.pid)) && alive(state.pid)) {
    process.kill(state.pid, 'SIGTERM');
    for (const deadline = Date.now() + 60_000; Date.now() < deadline && alive(state.pid); ) await sleep(200);
  }
  // Whatever of its process group outlived it (the lab process died hard, or did not finish in time).
  if (groupAlive(state.pid)) {
    process.kill(-state.pid, 'SIGKILL');
    for (const deadline = Date.now() + 10_000; Date.now() < deadline && groupAlive(state.pid); ) await sleep(100);
  }
  // A lab process that died before its cleanup left its database and state: the teardown mode does that part.
  if (await readLabState(dir)) {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [labProcessPath, '--teardown', '--state-dir', dir], {
        cwd: repoRoot,
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new CliUsageError(`the lab's teardown failed (exit ${code})`))));
    });
  }
  return `lab down: stopped the lab (pid ${state.pid}), its controller and ${state.machines.length} machine(s); database ${new URL(state.databaseUrl).pathname.slice(1)} dropped`;
}

export function registerLabCommands(program: Command): void {
  const lab = program.command('lab').description('a virtual fleet on this machine: a controller and virtual machines with virtual BMCs');

  lab
    .command('up')
    .description('start a lab in the background, enroll and deploy its machines, and point bmctl at it (saved defaults)')
    .option('--nodes <n>', `virtual machines (1 to ${LAB_MAX_NODES})`, '4')
    .option(
      '--database <url>',
      "MySQL server for the lab's own database, a fresh bm_lab_* on it (default: BM_DATABASE_URL's server, else mysql://root@127.0.0.1:3306/)",
    )
    .option('--timeout <s>', 'give up if the instances are not ACTIVE after this many seconds', '600')
    .action(async (o: { nodes: string; database?: string; timeout: string }) => {
      const nodes = Number(o.nodes);
      if (!Number.isInteger(nodes) || nodes < 1 || nodes > LAB_MAX_NODES)
        throw new CliUsageError(`--nodes must be a whole number from 1 to ${LAB_MAX_NODES}, got ${o.nodes}`);
      const dir = labStateDir(process.env);
      const existing = await readLabState(dir);
      if (existing && (await isLabProcess(existing.pid)))
        throw new CliUsageError(`a lab is already up (pid ${existing.pid}, ${existing.url}); bmctl lab down first`);
      if (existing) throw new CliUsageError(`a lab that died left its state in ${stateFile(dir)}; bmctl lab down cleans it up`);
      say(`starting the lab process: a controller on its own database and ${nodes} virtual machine(s) (log: ${logFile(dir)})`);
      const state = await startLabProcess(dir, nodes, o.database ?? process.env.BM_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/', 180_000);
      say(
        `controller ${state.url} up (pid ${state.controllerPid}), database ${new URL(state.databaseUrl).pathname.slice(1)}, NATS prefix ${state.natsPrefix}`,
      );
      const conn = connect(state.url, {
        metadata: { authorization: `Bearer ${state.token}` },
        ...(state.ca ? { credentials: tlsCredentials(await readFile(state.ca)) } : {}),
      });
      try {
        await operate(conn, state, Number(o.timeout));
        const { instances } = await conn.client(InstanceService).listInstances({});
        const { nodes: rows } = await conn.client(NodeService).listNodes({ limit: 1000 });
        process.stdout.write(
          table(
            ['UUID', 'Name', 'Status', 'Address', 'Node'],
            instances.map((i) => [i.uuid, i.name, i.state, i.address, i.nodeUuid]),
          ) + '\n',
        );
        process.stdout.write(table(NODE_HEADERS, rows.map(nodeRow)) + '\n');
      } catch (err) {
        conn.close();
        process.stderr.write(`[lab] the lab did not come up; stopping it\n`);
        await labDown(dir).catch(() => undefined);
        throw err;
      }
      conn.close();
      const saved = saveDefaults(process.env, { url: state.url, token: state.token, ...(state.ca ? { ca: state.ca } : {}) });
      say(
        `the lab runs in the background; bmctl now talks to it (saved in ${saved}, used when neither --url/--token nor BM_URL/BM_TOKEN are set)`,
      );
      say('in another shell, or to be explicit:');
      process.stdout.write(`export BM_URL=${state.url} BM_TOKEN=${state.token}${state.ca ? ` BM_CA=${state.ca}` : ''}\n`);
      say('try: bmctl instance list; bmctl node list; bmctl watch; bmctl lab down stops it all');
    });

  lab
    .command('down')
    .description('stop the lab (its processes, by the PIDs it recorded), drop its database, forget the saved defaults')
    .action(async () => {
      const dir = labStateDir(process.env);
      const state = await readLabState(dir);
      const message = await labDown(dir);
      // Only the lab's own saved defaults: anything else there was put by someone else.
      if (state && readSavedDefaults(process.env)?.url === state.url) removeSavedDefaults(process.env);
      say(message);
    });
}
