/**
 * The controller drives instances on its own: bmctl boot reaches ACTIVE with
 * the image and a config drive on the disk; delete erases and returns the
 * node; each failure (BMC unreachable, no callback, checksum mismatch) ends
 * in deploy-failed / ERROR with the reason and comes back through its way
 * back. Real controller process, MariaDB, NATS, virtual machines whose BMCs
 * speak IPMI 2.0 to the native driver and whose network boot starts a real
 * agent process.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceService, type Instance } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { freePort, runBmctl, startControllerProcess, type ControllerProcess, freeUdpPort, sha256OfFilePrefix, VirtualNode } from '../../controller/lab/index.ts';

const run = promisify(execFile);
const MIB = 1024 * 1024;
const IMAGE_BYTES = 16 * MIB;

let dir: string;
let ctl: ControllerProcess;
let api: RpcConnection;
let env: Record<string, string>;
let imageSha = '';
const machines: VirtualNode[] = [];
const log: string[] = [];

async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | null | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== null && value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}\n${log.slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const nodeState = async (id: string): Promise<string> => (await api.client(NodeService).getNode({ id })).provisionState;

async function machine(i: number): Promise<VirtualNode> {
  const name = `orch-${i}`;
  const m = new VirtualNode({ name, mac: `52:54:00:0c:00:${String(i).padStart(2, '0')}`, bmcPassword: `orch-${i}-secret`, diskBytes: 64 * MIB, dir: path.join(dir, name), bootUrl: `http://127.0.0.1:${httpPort}`, say: (msg) => log.push(msg) });
  await m.start();
  machines.push(m);
  const created = await runBmctl(['node', 'create', '--name', name, '--pm-address', m.bmc.address, '--pm-port', String(m.bmc.port), '--pm-user', 'admin', '--pm-password', m.o.bmcPassword, '--cpus', '4', '--memory-mb', '8192', '--disk-gb', '1', '--arch', 'x86_64', '--mac', m.o.mac, '--resource-class', `rc-${i}`], env);
  expect(created.code, created.stderr).toBe(0);
  const flavor = await runBmctl(['flavor', 'create', `orch-${i}`, '--ram', '4096', '--disk', '1', '--cpus', '2', '--resource-class', `rc-${i}`], env);
  expect(flavor.code, flavor.stderr).toBe(0);
  for (const verb of ['manage', 'provide']) {
    const r = await runBmctl(['node', verb, name, '--wait', '--timeout', '60'], env, 90_000);
    expect(r.code, `${verb}: ${r.stdout}${r.stderr}\n${log.join('\n')}`).toBe(0);
  }
  expect(await nodeState(name)).toBe('available');
  return m;
}

async function instance(id: string): Promise<Instance> {
  return api.client(InstanceService).getInstance({ id });
}

/** The ISO 9660 config drive the agent put in the disk's last 64 MiB, copied out for isoinfo. */
async function configDrive(disk: string): Promise<string> {
  const handle = await open(disk, 'r');
  try {
    const size = (await handle.stat()).size;
    const magic = Buffer.alloc(5);
    for (let at = size - MIB; at >= Math.max(0, size - 64 * MIB); at -= MIB) {
      await handle.read(magic, 0, 5, at + 0x8001);
      if (magic.toString('latin1') === 'CD001') {
        const iso = Buffer.alloc(size - at);
        await handle.read(iso, 0, iso.length, at);
        const file = path.join(dir, `cd-${randomBytes(3).toString('hex')}.iso`);
        await writeFile(file, iso);
        return file;
      }
    }
  } finally {
    await handle.close();
  }
  throw new Error(`no config drive in the last 64 MiB of ${disk}`);
}

const isoFile = async (iso: string, file: string): Promise<string> => (await run('isoinfo', ['-i', iso, '-J', '-x', file], { encoding: 'buffer' })).stdout.toString('utf8');

let httpPort = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-orch-'));
  await mkdir(path.join(dir, 'http/deploy'), { recursive: true });
  await mkdir(path.join(dir, 'tftp'), { recursive: true });
  await writeFile(path.join(dir, 'http/deploy/vmlinuz'), 'kernel\n');
  await writeFile(path.join(dir, 'http/deploy/initrd'), 'ramdisk\n');
  httpPort = await freePort();
  ctl = await startControllerProcess({
    logLevel: 'info',
    extraToml: [
      '[conductor]',
      'callback_timeout_s = 4',
      'poll_ms = 100',
      '[power]',
      'call_timeout_s = 2',
      'settle_timeout_s = 10',
      '[boot]',
      'server_address = "127.0.0.1"',
      'bind_address = "127.0.0.1"',
      'mode = "off"',
      `tftp_port = ${await freeUdpPort()}`,
      `http_port = ${httpPort}`,
      `tftp_root = "${path.join(dir, 'tftp')}"`,
      `http_root = "${path.join(dir, 'http')}"`,
    ].join('\n'),
  });
  env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
  api = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
  // A raw image: random MiBs among holes.
  const raw = path.join(dir, 'image.raw');
  const handle = await open(raw, 'w');
  await handle.truncate(IMAGE_BYTES);
  for (let mib = 0; mib < 16; mib += 3) await handle.write(randomBytes(MIB), 0, MIB, mib * MIB);
  await handle.close();
  imageSha = await sha256OfFilePrefix(raw, IMAGE_BYTES);
  const up = await runBmctl(['image', 'create', raw, '--name', 'orch-image', '--disk-format', 'raw'], env, 60_000);
  expect(up.code, up.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  api?.close();
  await Promise.all(machines.map((m) => m.stop().catch(() => undefined)));
  await ctl?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('the conductor drives instances', () => {
  it('boots an instance to ACTIVE with the image and a config drive, then deletes it back to available', async () => {
    const m = await machine(1);
    const userData = path.join(dir, 'user-data');
    await writeFile(userData, '#cloud-config\nruncmd: [echo orchestration-marker]\n');
    const keyFile = path.join(dir, 'key.pub');
    await writeFile(keyFile, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOrchestrationTestKeyOnly0000000000000000 test@lab\n');
    const booted = await runBmctl(['boot', '--flavor', 'orch-1', '--image', 'orch-image', '--user-data', userData, '--key-file', keyFile, '--static', '10.0.0.5/24,10.0.0.1,10.0.0.2', '--wait', '--timeout', '60', 'vm1'], env, 90_000);
    expect(booted.code, `${booted.stdout}${booted.stderr}\n${log.join('\n')}`).toBe(0);
    expect(booted.stdout).toMatch(/vm1 ACTIVE address=10\.0\.0\.5/);
    const vm = await instance('vm1');
    expect(vm).toMatchObject({ state: 'ACTIVE', progress: 100, nodeProvisionState: 'active', powerState: 'on' });
    expect(await sha256OfFilePrefix(m.disk, IMAGE_BYTES)).toBe(imageSha);
    const iso = await configDrive(m.disk);
    expect(await isoFile(iso, '/openstack/latest/user_data')).toContain('orchestration-marker');
    const meta = JSON.parse(await isoFile(iso, '/openstack/latest/meta_data.json')) as Record<string, unknown>;
    expect(meta).toMatchObject({ uuid: vm.uuid, hostname: 'vm1', public_keys: { 'key-0': expect.stringContaining('ssh-ed25519 ') } });
    const net = JSON.parse(await isoFile(iso, '/openstack/latest/network_data.json')) as { links: { ethernet_mac_address: string }[]; networks: Record<string, unknown>[]; services: unknown[] };
    expect(net.links[0]?.ethernet_mac_address).toBe(m.o.mac);
    expect(net.networks[0]).toMatchObject({ type: 'ipv4', ip_address: '10.0.0.5', netmask: '255.255.255.0' });
    expect(net.services).toEqual([{ type: 'dns', address: '10.0.0.2' }]);
    // The machine now boots from its disk, as the BMC was told.
    expect(log.some((l) => /orch-1: powered on \(cycle\), booting from its disk/.test(l))).toBe(true);

    const deleted = await runBmctl(['instance', 'delete', 'vm1', '--wait', '--timeout', '60'], env, 90_000);
    expect(deleted.code, `${deleted.stdout}${deleted.stderr}`).toBe(0);
    await waitFor('the node back in the pool', 30_000, async () => ((await nodeState('orch-1')) === 'available' ? true : null));
    await expect(instance(vm.uuid)).rejects.toMatchObject({ code: status.NOT_FOUND });
    // Cleaning erased the metadata regions: the image's first MiB reads as zeros now.
    const handle = await open(m.disk, 'r');
    const head = Buffer.alloc(MIB);
    await handle.read(head, 0, MIB, 0);
    await handle.close();
    expect(head.equals(Buffer.alloc(MIB))).toBe(true);
    const node = await api.client(NodeService).getNode({ id: 'orch-1' });
    expect(node.instanceUuid).toBe('');
  }, 120_000);

  it('says which filter removed the candidates when no node fits', async () => {
    await runBmctl(['flavor', 'create', 'orch-huge', '--ram', '999999', '--disk', '1', '--cpus', '2'], env);
    const err = await api.client(InstanceService).createInstance({ name: 'too-big', flavor: 'orch-huge', image: 'orch-image' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: status.RESOURCE_EXHAUSTED });
    expect((err as { details: string }).details).toMatch(/^no valid node: \d+ available; \d+ too little RAM/);
    expect((await api.client(InstanceService).listInstances({})).instances.map((i) => i.name)).not.toContain('too-big');
  });

  it('ends in deploy-failed with the reason when the BMC does not answer, and recovers once it does', async () => {
    const m = await machine(2);
    const port = m.bmc.port;
    await m.stopBmc();
    const booted = await runBmctl(['boot', '--flavor', 'orch-2', '--image', 'orch-image', '--wait', '--timeout', '60', 'vm2'], env, 90_000);
    expect(booted.code).toBe(1);
    const vm = await instance('vm2');
    expect(vm.state).toBe('ERROR');
    expect(vm.lastError).toMatch(/did not answer/);
    expect(vm.nodeProvisionState).toBe('deploy-failed');
    expect(booted.stdout).toMatch(/vm2 ERROR/);
    // Way back: the BMC answers again; deleting the instance cleans the node into the pool.
    await m.startBmc(port);
    const deleted = await runBmctl(['instance', 'delete', 'vm2', '--wait', '--timeout', '60'], env, 90_000);
    expect(deleted.code, `${deleted.stdout}${deleted.stderr}`).toBe(0);
    await waitFor('orch-2 available', 30_000, async () => ((await nodeState('orch-2')) === 'available' ? true : null));
  }, 120_000);

  it('ends in deploy-failed when the agent never calls back, and recovers through delete', async () => {
    const m = await machine(3);
    m.networkBoot = false;
    const booted = await runBmctl(['boot', '--flavor', 'orch-3', '--image', 'orch-image', '--wait', '--timeout', '60', 'vm3'], env, 90_000);
    expect(booted.code).toBe(1);
    const vm = await instance('vm3');
    expect(vm.state).toBe('ERROR');
    expect(vm.lastError).toMatch(/did not call back within 4 s/);
    expect(vm.nodeProvisionState).toBe('deploy-failed');
    m.networkBoot = true;
    const deleted = await runBmctl(['instance', 'delete', 'vm3', '--wait', '--timeout', '60'], env, 90_000);
    expect(deleted.code, `${deleted.stdout}${deleted.stderr}`).toBe(0);
    await waitFor('orch-3 available', 30_000, async () => ((await nodeState('orch-3')) === 'available' ? true : null));
  }, 120_000);

  it('ends in deploy-failed naming both digests when the written bytes do not match the image', async () => {
    await machine(4);
    // The stored blob rots after upload: what streams no longer has the digest the catalog recorded.
    const blobs = path.join(ctl.dir, 'images');
    const files = (await readdir(blobs, { recursive: true })).map(String).filter((f) => /[0-9a-f]{64}$/.test(f));
    expect(files.length).toBeGreaterThan(0);
    const stored = await api.client(NodeService).listNodes({}); // keep the connection warm
    expect(stored.nodes.length).toBeGreaterThan(0);
    for (const f of files) {
      const handle = await open(path.join(blobs, f), 'r+');
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, 5);
      byte[0] = byte[0]! ^ 0xff;
      await handle.write(byte, 0, 1, 5);
      await handle.close();
    }
    const booted = await runBmctl(['boot', '--flavor', 'orch-4', '--image', 'orch-image', '--wait', '--timeout', '60', 'vm4'], env, 90_000);
    expect(booted.code).toBe(1);
    const vm = await instance('vm4');
    expect(vm.state).toBe('ERROR');
    expect(vm.lastError).toMatch(/[0-9a-f]{64}.*[0-9a-f]{64}/);
    expect(vm.nodeProvisionState).toBe('deploy-failed');
    const deleted = await runBmctl(['instance', 'delete', 'vm4', '--wait', '--timeout', '60'], env, 90_000);
    expect(deleted.code, `${deleted.stdout}${deleted.stderr}`).toBe(0);
    await waitFor('orch-4 available', 30_000, async () => ((await nodeState('orch-4')) === 'available' ? true : null));
  }, 120_000);
});
