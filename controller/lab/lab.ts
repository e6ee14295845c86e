/**
 * The virtual lab: a real controller on its own database, serving network
 * boot on loopback, and N virtual machines, each a virtual BMC (IPMI 2.0
 * over UDP, driven by the controller's native driver) with a sparse-file
 * disk whose network boot starts a real agent from the iPXE script the
 * controller serves. The lab then does only what an operator does, through
 * bmctl: upload an image, enroll, manage, provide (the controller cleans
 * each machine through its agent), create a flavor, and boot one instance
 * per machine with --wait; the controller drives every deploy itself.
 * It keeps running for you to try bmctl against it until Ctrl-C, unless
 * --once is given.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { ImageService } from '../../proto/gen/bm/v1/image_pb.js';
import { connect } from '../../proto/rpc/index.ts';
import { dropDatabase } from '../../db/migrate.ts';
import type { ImageFormat } from '../images/extents.ts';
import { freePort, runBmctl, startControllerProcess } from './controller-process.ts';
import { freeUdpPort } from './udp-port.ts';
import { VirtualNode } from './virtual-node.ts';
import { sha256OfFilePrefix } from './file-sha.ts';

const run = promisify(execFile);
const MIB = 1024 * 1024;

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '4' }, once: { type: 'boolean', default: false } } });
const count = Number(values.nodes);
if (!Number.isInteger(count) || count < 1 || count > 200) {
  process.stderr.write(`lab: --nodes must be a whole number from 1 to 200, got ${values.nodes}\n`);
  process.exit(2);
}

const say = (m: string): void => void process.stdout.write(`[lab] ${m}\n`);
const dir = await mkdtemp(path.join(os.tmpdir(), 'bm-lab-'));
const labDb = process.env.BM_LAB_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/bm_lab';
const machines: VirtualNode[] = [];
let stopping = false;
let stopController: () => Promise<unknown> = async () => undefined;

const stop = async (code: number): Promise<never> => {
  if (!stopping) {
    stopping = true;
    say('stopping the machines and the controller');
    await Promise.all(machines.map((m) => m.stop().catch(() => undefined)));
    await stopController();
    await rm(dir, { recursive: true, force: true });
  }
  process.exit(code);
};
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

/** A 64 MiB disk image with data scattered among holes, as qcow2 when qemu-img is here. */
async function makeImage(): Promise<{ file: string; format: ImageFormat }> {
  const raw = path.join(dir, 'image.raw');
  const handle = await open(raw, 'w');
  try {
    await handle.truncate(64 * MIB);
    for (let mib = 0; mib < 64; mib += 5) await handle.write(randomBytes(MIB), 0, MIB, mib * MIB);
  } finally {
    await handle.close();
  }
  try {
    const qcow2 = path.join(dir, 'image.qcow2');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    return { file: qcow2, format: 'qcow2' };
  } catch {
    say('qemu-img is missing (Debian package qemu-utils): uploading the raw image instead');
    return { file: raw, format: 'raw' };
  }
}


try {
  say('starting a controller on its own database, with HTTP and TFTP boot on loopback');
  // The lab database is the lab's alone: a run killed earlier may have left one behind.
  await dropDatabase(labDb);
  await mkdir(path.join(dir, 'http/deploy'), { recursive: true });
  await mkdir(path.join(dir, 'tftp'), { recursive: true });
  // The lab's machines do not run these; a real fleet's deploy kernel and ramdisk go here (or into the image store as aki/ari).
  await writeFile(path.join(dir, 'http/deploy/vmlinuz'), 'lab deploy kernel\n');
  await writeFile(path.join(dir, 'http/deploy/initrd'), 'lab deploy ramdisk\n');
  const httpPort = await freePort();
  const ctl = await startControllerProcess({
    databaseUrl: labDb,
    logLevel: 'warn',
    extraToml: [
      '[conductor]',
      'callback_timeout_s = 120',
      'poll_ms = 200',
      '[power]',
      'sync_interval_s = 10',
      'call_timeout_s = 5',
      'settle_timeout_s = 20',
      '[boot]',
      'server_address = "127.0.0.1"',
      'bind_address = "127.0.0.1"',
      // Loopback has no broadcast segment to serve DHCP on: the machines start at the iPXE step.
      'mode = "off"',
      `tftp_port = ${await freeUdpPort()}`,
      `http_port = ${httpPort}`,
      `tftp_root = "${path.join(dir, 'tftp')}"`,
      `http_root = "${path.join(dir, 'http')}"`,
    ].join('\n'),
  });
  stopController = () => ctl.stop();
  const env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
  const conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });

  const { file, format } = await makeImage();
  say(`uploading a ${format} image with bmctl`);
  const upload = await runBmctl(['--json', 'image', 'create', file, '--name', 'lab-image', '--disk-format', format], env, 120_000);
  if (upload.code !== 0) throw new Error(`image create failed: ${upload.stderr.trim()}`);
  const image = await conn.client(ImageService).getImage({ id: 'lab-image' });
  say(`image ${image.uuid}: ${image.size} bytes stored, ${image.virtualSize} bytes of disk, raw content sha256 ${image.rawSha256}`);

  say(`starting ${count} virtual machine(s), each with its own virtual BMC on 127.0.0.1`);
  for (let i = 1; i <= count; i++) {
    const hex = i.toString(16).padStart(4, '0');
    const name = `lab-node-${String(i).padStart(3, '0')}`;
    const machine = new VirtualNode({ name, mac: `52:54:00:00:${hex.slice(0, 2)}:${hex.slice(2)}`, bmcPassword: `lab-${hex}-secret`, diskBytes: 128 * MIB, dir: path.join(dir, 'machines', name), bootUrl: `http://127.0.0.1:${httpPort}`, say });
    await machine.start();
    machines.push(machine);
  }

  say('enrolling them (bmctl node create) and verifying their BMCs (bmctl node manage)');
  for (const [i, m] of machines.entries()) {
    const created = await runBmctl(['node', 'create', '--name', m.o.name, '--pm-address', m.bmc.address, '--pm-port', String(m.bmc.port), '--pm-user', 'admin', '--pm-password', m.o.bmcPassword, '--cpus', String(8 * (1 + (i % 4))), '--memory-mb', '16384', '--disk-gb', '1', '--arch', 'x86_64', '--mac', m.o.mac], env);
    if (created.code !== 0) throw new Error(`node create ${m.o.name}: ${created.stderr.trim()}`);
  }
  await Promise.all(
    machines.map(async (m) => {
      const managed = await runBmctl(['node', 'manage', m.o.name, '--wait', '--timeout', '60'], env, 90_000);
      if (managed.code !== 0) throw new Error(`node manage ${m.o.name}: ${(managed.stdout + managed.stderr).trim()}`);
    }),
  );

  say('cleaning them into the pool (bmctl node provide): each boots the ramdisk, its agent erases the disk');
  await Promise.all(
    machines.map(async (m) => {
      const provided = await runBmctl(['node', 'provide', m.o.name, '--wait', '--timeout', '120'], env, 150_000);
      if (provided.code !== 0) throw new Error(`node provide ${m.o.name}: ${(provided.stdout + provided.stderr).trim()}`);
    }),
  );

  say('creating a flavor (bmctl flavor create) and booting one instance per machine (bmctl boot --wait)');
  const flavor = await runBmctl(['flavor', 'create', 'lab-small', '--ram', '16384', '--disk', '1', '--cpus', '8'], env);
  if (flavor.code !== 0) throw new Error(`flavor create: ${flavor.stderr.trim()}`);
  const userData = path.join(dir, 'user-data');
  await writeFile(userData, '#cloud-config\nruncmd:\n  - echo hello from the lab\n');
  const started = performance.now();
  await Promise.all(
    machines.map(async (_, i) => {
      const name = `lab-vm-${String(i + 1).padStart(3, '0')}`;
      const booted = await runBmctl(['boot', '--flavor', 'lab-small', '--image', 'lab-image', '--user-data', userData, '--wait', '--timeout', '300', name], env, 330_000);
      process.stdout.write(booted.stdout);
      if (booted.code !== 0) throw new Error(`boot ${name}: ${(booted.stdout + booted.stderr).trim()}`);
    }),
  );
  say(`${count} instance(s) ACTIVE in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  for (const m of machines) {
    const onDisk = await sha256OfFilePrefix(m.disk, Number(image.virtualSize));
    if (onDisk !== image.rawSha256) throw new Error(`${m.o.name}: the disk holds ${onDisk}, not the image's ${image.rawSha256}`);
  }
  say('every disk holds the image bytes');
  conn.close();
  const instances = await runBmctl(['instance', 'list'], env);
  process.stdout.write(instances.stdout + instances.stderr);

  const list = await runBmctl(['node', 'list'], env);
  process.stdout.write(list.stdout + list.stderr);
  if (list.code !== 0) await stop(1);
  if (values.once) await stop(0);
  say('the controller keeps running; in another shell:');
  say(`  export BM_URL=${ctl.url} BM_TOKEN=${ctl.token}`);
  say('  bin/bmctl node list; bin/bmctl node power status lab-node-001; bin/bmctl watch; bin/bmctl image list');
  say('Ctrl-C stops it and drops the lab database.');
} catch (err) {
  process.stderr.write(`lab: ${err instanceof Error ? err.message : String(err)}\n`);
  await stop(1);
}
