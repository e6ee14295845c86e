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
import { mkdtemp, open, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceService, type Instance } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import {
  loopbackBootToml,
  freePort,
  runBmctl,
  startControllerProcess,
  type ControllerProcess,
  freeUdpPort,
  sha256OfFilePrefix,
  VirtualNode,
} from '../../controller/lab/index.ts';
import { createNodeWithBmctl, provisionWithBmctl } from '../support/bmctl-enroll.ts';

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

async function machine(i: number, verbs: readonly string[] = ['manage', 'provide']): Promise<VirtualNode> {
  const name = `orch-${i}`;
  const m = new VirtualNode({
    name,
    mac: `52:54:00:0c:00:${String(i).padStart(2, '0')}`,
    bmcPassword: `orch-${i}-secret`,
    diskBytes: 64 * MIB,
    dir: path.join(dir, name),
    bootUrl: `http://127.0.0.1:${httpPort}`,
    say: (msg) => log.push(msg),
  });
  await m.start();
  machines.push(m);
  await createNodeWithBmctl(m, env, { name: name, cpus: 4, memoryMb: 8192, extra: ['--arch', 'x86_64', '--resource-class', `rc-${i}`] });
  const flavor = await runBmctl(
    ['flavor', 'create', `orch-${i}`, '--ram', '4096', '--disk', '1', '--cpus', '2', '--resource-class', `rc-${i}`],
    env,
  );
  expect(flavor.code, flavor.stderr).toBe(0);
  await provisionWithBmctl(name, verbs, env, log);
  expect(await nodeState(name)).toBe(verbs.includes('provide') ? 'available' : 'manageable');
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

const isoFile = async (iso: string, file: string): Promise<string> =>
  (await run('isoinfo', ['-i', iso, '-J', '-x', file], { encoding: 'buffer' })).stdout.toString('utf8');

let httpPort = 0;

/** GET on the boot port from a given loopback source address (the metadata service keys on it). */
function httpGet(pathname: string, localAddress: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: httpPort, path: pathname, localAddress }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-orch-'));
  httpPort = await freePort();
  const bootToml = await loopbackBootToml({ dir, httpPort, tftpPort: await freeUdpPort() });
  ctl = await startControllerProcess({
    logLevel: 'info',
    extraToml: [
      '[discovery]',
      'enabled = true',
      '[conductor]',
      'callback_timeout_s = 15',
      'poll_ms = 100',
      '[power]',
      'call_timeout_s = 2',
      'settle_timeout_s = 10',
      bootToml,
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
}, 240_000);

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
    const booted = await runBmctl(
      [
        'boot',
        '--flavor',
        'orch-1',
        '--image',
        'orch-image',
        '--user-data',
        userData,
        '--key-file',
        keyFile,
        '--static',
        '127.0.0.55/8,127.0.0.1,127.0.0.53',
        '--wait',
        '--timeout',
        '120',
        'vm1',
      ],
      env,
      150_000,
    );
    expect(booted.code, `${booted.stdout}${booted.stderr}\n${log.join('\n')}`).toBe(0);
    expect(booted.stdout).toMatch(/vm1 ACTIVE address=127\.0\.0\.55/);
    const vm = await instance('vm1');
    expect(vm).toMatchObject({ state: 'ACTIVE', progress: 100, nodeProvisionState: 'active', powerState: 'on' });
    expect(await sha256OfFilePrefix(m.disk, IMAGE_BYTES)).toBe(imageSha);
    const iso = await configDrive(m.disk);
    expect(await isoFile(iso, '/openstack/latest/user_data')).toContain('orchestration-marker');
    const meta = JSON.parse(await isoFile(iso, '/openstack/latest/meta_data.json')) as Record<string, unknown>;
    expect(meta).toMatchObject({ uuid: vm.uuid, hostname: 'vm1', public_keys: { 'key-0': expect.stringContaining('ssh-ed25519 ') } });
    const net = JSON.parse(await isoFile(iso, '/openstack/latest/network_data.json')) as {
      links: { ethernet_mac_address: string }[];
      networks: Record<string, unknown>[];
      services: unknown[];
    };
    expect(net.links[0]?.ethernet_mac_address).toBe(m.o.mac);
    expect(net.networks[0]).toMatchObject({ type: 'ipv4', ip_address: '127.0.0.55', netmask: '255.0.0.0' });
    expect(net.services).toEqual([{ type: 'dns', address: '127.0.0.53' }]);
    // The metadata service answers the instance's own address, and nobody else.
    const fromVm = await httpGet('/openstack/latest/meta_data.json', '127.0.0.55');
    expect(fromVm.status).toBe(200);
    expect(JSON.parse(fromVm.body)).toMatchObject({ uuid: vm.uuid, hostname: 'vm1' });
    expect((await httpGet('/openstack/latest/user_data', '127.0.0.55')).body).toContain('orchestration-marker');
    expect((await httpGet('/latest/meta-data/instance-id', '127.0.0.55')).body).toBe(vm.uuid);
    expect((await httpGet('/latest/meta-data/public-keys/0/openssh-key', '127.0.0.55')).body).toMatch(/^ssh-ed25519 /);
    for (const stranger of ['127.0.0.66', '127.0.0.1']) {
      const refused = await httpGet('/openstack/latest/meta_data.json', stranger);
      expect(refused.status).toBe(404);
      expect(refused.body).not.toContain(vm.uuid);
    }
    // Every BMC action of the deploy left an audit line in the controller's log, without the password.
    expect(ctl.logs()).toMatch(/"audit":"bmc","node":"[0-9a-f-]{36}","action":"bootdev pxe \+ power on \(deploy\)","driver":"ipmi"/);
    expect(ctl.logs()).toMatch(/"action":"bootdev disk \+ power cycle","driver":"ipmi","bmc":"127\.0\.0\.1:\d+","result":"ok"/);
    expect(ctl.logs()).not.toContain(m.o.bmcPassword);
    // The machine now boots from its disk, as the BMC was told.
    expect(log.some((l) => /orch-1: powered on \(cycle\), booting from its disk/.test(l))).toBe(true);

    const deleted = await runBmctl(['instance', 'delete', 'vm1', '--wait', '--timeout', '120'], env, 150_000);
    expect(deleted.code, `${deleted.stdout}${deleted.stderr}`).toBe(0);
    await waitFor('the node back in the pool', 90_000, async () => ((await nodeState('orch-1')) === 'available' ? true : null));
    await expect(instance(vm.uuid)).rejects.toMatchObject({ code: status.NOT_FOUND });
    // Cleaning erased the metadata regions: the image's first MiB reads as zeros now.
    const handle = await open(m.disk, 'r');
    const head = Buffer.alloc(MIB);
    await handle.read(head, 0, MIB, 0);
    await handle.close();
    expect(head.equals(Buffer.alloc(MIB))).toBe(true);
    const node = await api.client(NodeService).getNode({ id: 'orch-1' });
    expect(node.instanceUuid).toBe('');
  }, 240_000);

  it('says which filter removed the candidates when no node fits', async () => {
    await runBmctl(['flavor', 'create', 'orch-huge', '--ram', '999999', '--disk', '1', '--cpus', '2'], env);
    const err = await api
      .client(InstanceService)
      .createInstance({ name: 'too-big', flavor: 'orch-huge', image: 'orch-image' })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: status.RESOURCE_EXHAUSTED });
    expect((err as { details: string }).details).toMatch(/^no valid node: \d+ available; \d+ too little RAM/);
    expect((await api.client(InstanceService).listInstances({})).instances.map((i) => i.name)).not.toContain('too-big');
  });

  it('ends in deploy-failed with the reason when the BMC does not answer, and recovers once it does', async () => {
    const m = await machine(2);
    const port = m.bmc.port;
    await m.stopBmc();
    const booted = await runBmctl(
      ['boot', '--flavor', 'orch-2', '--image', 'orch-image', '--wait', '--timeout', '120', 'vm2'],
      env,
      150_000,
    );
    expect(booted.code).toBe(1);
    const vm = await instance('vm2');
    expect(vm.state).toBe('ERROR');
    expect(vm.lastError).toMatch(/did not answer/);
    expect(vm.nodeProvisionState).toBe('deploy-failed');
    expect(booted.stdout).toMatch(/vm2 ERROR/);
    // Way back: the BMC answers again; deleting the instance cleans the node into the pool.
    await m.startBmc(port);
    const deleted = await runBmctl(['instance', 'delete', 'vm2', '--wait', '--timeout', '120'], env, 150_000);
    expect(deleted.code, `${deleted.stdout}${deleted.stderr}`).toBe(0);
    await waitFor('orch-2 available', 90_000, async () => ((await nodeState('orch-2')) === 'available' ? true : null));
  }, 240_000);

  it('ends in deploy-failed when the agent never calls back, and recovers through delete', async () => {
    const m = await machine(3);
    m.networkBoot = false;
    const booted = await runBmctl(
      ['boot', '--flavor', 'orch-3', '--image', 'orch-image', '--wait', '--timeout', '120', 'vm3'],
      env,
      150_000,
    );
    expect(booted.code).toBe(1);
    const vm = await instance('vm3');
    expect(vm.state).toBe('ERROR');
    expect(vm.lastError).toMatch(/did not call back within 15 s/);
    expect(vm.nodeProvisionState).toBe('deploy-failed');
    // What an operator attaches to the bug report: the reason, the instance, the events; the password masked.
    const diag = await runBmctl(['node', 'diagnose', 'orch-3'], env);
    expect(diag.code, diag.stderr).toBe(0);
    const report = JSON.parse(diag.stdout) as {
      node: { lastError: string; bmc: { password: string } };
      instance: { state: string };
      recentEvents: { type: string; provisionState: string }[];
      ports: string[];
    };
    expect(report.node.lastError).toMatch(/did not call back/);
    expect(report.node.bmc.password).toBe('********');
    expect(report.instance.state).toBe('ERROR');
    expect(report.ports).toEqual([m.o.mac]);
    expect(report.recentEvents.map((e) => e.provisionState)).toEqual(expect.arrayContaining(['wait-callback', 'deploy-failed']));
    expect(diag.stdout).not.toContain(m.o.bmcPassword);
    m.networkBoot = true;
    const deleted = await runBmctl(['instance', 'delete', 'vm3', '--wait', '--timeout', '120'], env, 150_000);
    expect(deleted.code, `${deleted.stdout}${deleted.stderr}`).toBe(0);
    await waitFor('orch-3 available', 90_000, async () => ((await nodeState('orch-3')) === 'available' ? true : null));
  }, 240_000);

  it('ends in deploy-failed naming both digests when the written bytes do not match the image', async () => {
    await machine(4);
    // An image of its own (blobs are content-addressed: rotting the shared one would break the other tests).
    const raw = path.join(dir, 'rot.raw');
    await writeFile(raw, randomBytes(2 * MIB));
    const up = await runBmctl(['--json', 'image', 'create', raw, '--name', 'orch-rot', '--disk-format', 'raw'], env, 60_000);
    expect(up.code, up.stderr).toBe(0);
    const sha = (JSON.parse(up.stdout) as { sha256: string }).sha256;
    // The stored blob rots after upload: what streams no longer has the digest the catalog recorded.
    const blobs = path.join(ctl.dir, 'images');
    const files = (await readdir(blobs, { recursive: true })).map(String).filter((f) => f.endsWith(sha));
    expect(files).toHaveLength(1);
    const handle = await open(path.join(blobs, files[0]!), 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 5);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, 5);
    await handle.close();
    const booted = await runBmctl(['boot', '--flavor', 'orch-4', '--image', 'orch-rot', '--wait', '--timeout', '120', 'vm4'], env, 150_000);
    expect(booted.code).toBe(1);
    const vm = await instance('vm4');
    expect(vm.state).toBe('ERROR');
    expect(vm.lastError).toMatch(/[0-9a-f]{64}.*[0-9a-f]{64}/);
    expect(vm.nodeProvisionState).toBe('deploy-failed');
    const deleted = await runBmctl(['instance', 'delete', 'vm4', '--wait', '--timeout', '120'], env, 150_000);
    expect(deleted.code, `${deleted.stdout}${deleted.stderr}`).toBe(0);
    await waitFor('orch-4 available', 90_000, async () => ((await nodeState('orch-4')) === 'available' ? true : null));
  }, 240_000);

  it("inspects a node: its agent's inventory replaces what the operator typed", async () => {
    await machine(5, ['manage']);
    const before = await api.client(NodeService).getNode({ id: 'orch-5' });
    expect(before).toMatchObject({ cpus: 4, memoryMb: 8192, localGb: 1 });
    const inspected = await runBmctl(['node', 'inspect', 'orch-5', '--wait', '--timeout', '120'], env, 150_000);
    expect(inspected.code, `${inspected.stdout}${inspected.stderr}\n${log.join('\n')}`).toBe(0);
    const after = await api.client(NodeService).getNode({ id: 'orch-5' });
    // The virtual machine's agent reads a QEMU machine's /proc and /sys: 2 CPUs, 3919 MiB, a 20 GiB vda.
    expect(after).toMatchObject({
      provisionState: 'manageable',
      cpus: 2,
      memoryMb: 3919,
      localGb: 20,
      cpuArch: 'x86_64',
      powerState: 'off',
    });
  }, 240_000);

  it('enrolls an unknown machine that network-boots with discovery on, from its own inventory', async () => {
    const mac = '52:54:00:0c:00:99';
    const m = new VirtualNode({
      name: 'stranger',
      mac,
      bmcPassword: 'stranger-secret',
      diskBytes: 64 * MIB,
      dir: path.join(dir, 'stranger'),
      bootUrl: `http://127.0.0.1:${httpPort}`,
      say: (msg) => log.push(msg),
    });
    await m.start();
    machines.push(m);
    // Someone powers it on at the rack (here: its BMC, which the controller does not know).
    const ipmi = ['-I', 'lanplus', '-H', m.bmc.address, '-p', String(m.bmc.port), '-U', 'admin', '-E', '-C', '3'];
    await run('ipmitool', [...ipmi, 'chassis', 'bootdev', 'pxe'], { env: { ...process.env, IPMI_PASSWORD: 'stranger-secret' } });
    await run('ipmitool', [...ipmi, 'power', 'on'], { env: { ...process.env, IPMI_PASSWORD: 'stranger-secret' } });
    const node = await waitFor('the stranger to enroll itself', 60_000, async () => {
      const { nodes } = await api.client(NodeService).listNodes({ provisionState: 'enroll' });
      return nodes.find((n) => n.macs.includes(mac)) ?? null;
    });
    expect(node).toMatchObject({ cpus: 2, memoryMb: 3919, localGb: 20, cpuArch: 'x86_64', pmAddress: '' });
    expect(node.properties.discovered).toBe('true');
  }, 240_000);

  it('reboots an instance hard and soft, and powers it off and on', async () => {
    const m = await machine(6);
    const booted = await runBmctl(
      ['boot', '--flavor', 'orch-6', '--image', 'orch-image', '--wait', '--timeout', '120', 'vm6'],
      env,
      150_000,
    );
    expect(booted.code, `${booted.stdout}${booted.stderr}`).toBe(0);
    const before = log.filter((l) => l.startsWith('orch-6:')).length;
    expect((await runBmctl(['instance', 'reboot', 'vm6', '--hard'], env, 60_000)).code).toBe(0);
    expect((await runBmctl(['instance', 'power-off', 'vm6'], env, 60_000)).code).toBe(0);
    expect((await instance('vm6')).powerState).toBe('off');
    expect((await runBmctl(['instance', 'power-on', 'vm6'], env, 60_000)).code).toBe(0);
    expect((await runBmctl(['instance', 'reboot', 'vm6'], env, 90_000)).code).toBe(0);
    expect((await instance('vm6')).powerState).toBe('on');
    // Every one of them reached the machine's BMC, and it booted from its disk each time.
    const after = log.filter((l) => l.startsWith('orch-6:')).slice(before);
    expect(after.filter((l) => /booting from its disk/.test(l)).length).toBeGreaterThanOrEqual(3);
    expect(after.some((l) => /powered off/.test(l))).toBe(true);
    expect(m.bmc.port).toBeGreaterThan(0);
  }, 240_000);

  it('comes back from inspect-failed and clean-failed through their ways back', async () => {
    const m = await machine(7, ['manage']);
    m.networkBoot = false;
    expect((await runBmctl(['node', 'inspect', 'orch-7', '--wait', '--timeout', '120'], env, 150_000)).code).toBe(1);
    expect(await nodeState('orch-7')).toBe('inspect-failed');
    m.networkBoot = true;
    expect((await runBmctl(['node', 'inspect', 'orch-7', '--wait', '--timeout', '120'], env, 150_000)).code).toBe(0);
    expect(await nodeState('orch-7')).toBe('manageable');

    m.networkBoot = false;
    expect((await runBmctl(['node', 'provide', 'orch-7', '--wait', '--timeout', '120'], env, 150_000)).code).toBe(1);
    const failed = await api.client(NodeService).getNode({ id: 'orch-7' });
    expect(failed).toMatchObject({ provisionState: 'clean-failed', maintenance: true });
    expect(failed.maintenanceReason).toMatch(/cleaning failed: .*did not call back/);
    // The scheduler never picks a node in maintenance.
    m.networkBoot = true;
    expect((await runBmctl(['node', 'maintenance-off', 'orch-7'], env)).code).toBe(0);
    expect((await runBmctl(['node', 'provide', 'orch-7', '--wait', '--timeout', '120'], env, 150_000)).code).toBe(0);
    expect(await nodeState('orch-7')).toBe('available');
    expect((await runBmctl(['node', 'maintenance-on', 'orch-7', '--reason', 'fan noise'], env)).code).toBe(0);
    expect(
      (await runBmctl(['flavor', 'create', 'orch-7b', '--ram', '1', '--disk', '1', '--cpus', '1', '--resource-class', 'rc-7'], env)).code,
    ).toBe(0);
    const refused = await api
      .client(InstanceService)
      .createInstance({ name: 'vm7', flavor: 'orch-7b', image: 'orch-image' })
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/in maintenance/) });
  }, 300_000);
});
