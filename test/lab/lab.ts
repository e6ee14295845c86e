/**
 * The virtual lab: a real controller on its own database, serving network
 * boot on loopback, and N virtual machines, each a virtual BMC (IPMI 2.0
 * over UDP, driven by the controller's native driver) with a sparse-file
 * disk. It uploads a qcow2 image, enrolls the machines, verifies their BMCs
 * (manage), then deploys every machine: PXE boot into the deploy ramdisk
 * (a real agent, started from the iPXE script the controller serves, with
 * its per-deploy token), stream the image over gRPC, check the digest, and
 * reboot it from its disk.
 *
 * The deploy orchestration (flavors, `bmctl boot`, the conductor's deploy
 * steps) is a later issue; until then the lab plays the conductor's part of
 * a deploy itself, through the same pieces the conductor will use.
 * It keeps running for you to try bmctl against it until Ctrl-C, unless
 * --once is given.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { ImageService } from '../../proto/gen/bm/v1/image_pb.js';
import { connect } from '../../proto/rpc/index.ts';
import { openDatabase } from '../../db/connect.ts';
import { dropDatabase } from '../../db/migrate.ts';
import { MysqlAgentTokens } from '../../controller/agents/tokens.ts';
import { MysqlDeployCheckpoints } from '../../controller/conductor/deploy-checkpoint.ts';
import { deployImage } from '../../controller/deploy/deploy.ts';
import { expectedDigestOf } from '../../controller/deploy/digest.ts';
import type { ImageFormat } from '../../controller/images/extents.ts';
import { LocalBlobStore } from '../../controller/images/local-blob-store.ts';
import { openImageSource } from '../../controller/images/open.ts';
import { freePort, runBmctl, startControllerProcess } from '../support/controller-process.ts';
import { freeUdpPort } from '../support/udp-port.ts';
import { VirtualNode } from './virtual-node.ts';
import { sha256OfFilePrefix } from '../support/file-sha.ts';

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


async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
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
  const nodes = conn.client(NodeService);
  const db = await openDatabase(labDb, { connectionLimit: 4 });

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
    const created = await runBmctl(['node', 'create', '--name', m.o.name, '--pm-address', m.bmc.address, '--pm-port', String(m.bmc.port), '--pm-user', 'admin', '--cpus', String(8 * (1 + (i % 4))), '--memory-mb', '16384', '--disk-gb', '1', '--arch', 'x86_64', '--mac', m.o.mac], { ...env, BM_PM_PASSWORD: m.o.bmcPassword });
    if (created.code !== 0) throw new Error(`node create ${m.o.name}: ${created.stderr.trim()}`);
  }
  await Promise.all(
    machines.map(async (m) => {
      const managed = await runBmctl(['node', 'manage', m.o.name, '--wait', '--timeout', '60'], env, 90_000);
      if (managed.code !== 0) throw new Error(`node manage ${m.o.name}: ${(managed.stdout + managed.stderr).trim()}`);
    }),
  );

  const tokens = new MysqlAgentTokens(db.db);
  const checkpoints = new MysqlDeployCheckpoints(db.db);
  const blobs = new LocalBlobStore(path.join(ctl.dir, 'images'));
  say('deploying the image to every machine');
  const started = performance.now();
  await Promise.all(
    machines.map(async (m) => {
      const node = await nodes.getNode({ id: m.o.name });
      // The conductor's part (later issue): mark the deploy, PXE-boot the machine.
      await db.pool.query("UPDATE nodes SET provision_state = 'deploying' WHERE uuid = ?", [node.uuid]);
      await nodes.setBootDevice({ id: node.uuid, device: 'pxe', persistent: false, uefi: true });
      await nodes.setPowerState({ id: node.uuid, target: 'on' });
      const boot = await Promise.race([m.ramdisk(), new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${m.o.name} did not boot its ramdisk within 60 s${m.lastBootError ? `: ${m.lastBootError}` : ''}`)), 60_000))]);
      // The agent looked itself up with the token from its command line and heartbeats its address.
      const agentAddress = await waitFor(`${m.o.name}'s agent heartbeat`, 30_000, async () => {
        const [rows] = await db.pool.query<import('mysql2/promise').RowDataPacket[]>('SELECT agent_address FROM nodes WHERE uuid = ? AND agent_seen_at IS NOT NULL', [node.uuid]);
        return (rows[0]?.agent_address as string | undefined) ?? null;
      });
      const opened = await openImageSource(await blobs.openRandomAccess(image.sha256), format);
      let result;
      try {
        // Progress is checkpointed in the node's row: a broken stream (or a controller taking over) resumes there.
        const resumeOffset = await checkpoints.begin(node.uuid, image.rawSha256);
        result = await deployImage({
          nodeUuid: node.uuid,
          agentAddress,
          agentToken: boot.token,
          source: opened.source,
          expected: expectedDigestOf(image),
          resumeOffset,
          checkpoint: (offset) => checkpoints.record(node.uuid, image.rawSha256, offset),
        });
        await checkpoints.clear(node.uuid);
      } finally {
        await opened.close();
      }
      const onDisk = await sha256OfFilePrefix(m.disk, Number(image.virtualSize));
      if (onDisk !== image.rawSha256) throw new Error(`${m.o.name}: the disk holds ${onDisk}, not the image's ${image.rawSha256}`);
      say(`${m.o.name}: image written and verified (agent digest ${result.sha256.slice(0, 16)}…, ${result.digestMethod}; ${Math.round(result.dataBytesSent / MIB)} MiB of data sent)`);
      await tokens.revoke(node.uuid);
      await db.pool.query("UPDATE nodes SET provision_state = 'active' WHERE uuid = ?", [node.uuid]);
      await nodes.setBootDevice({ id: node.uuid, device: 'disk', persistent: true, uefi: true });
      await nodes.setPowerState({ id: node.uuid, target: 'reboot' });
    }),
  );
  say(`${count} machine(s) deployed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  await db.close();
  conn.close();

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
