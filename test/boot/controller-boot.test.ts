/**
 * The boot services as the controller runs them: `[boot]` in bm.toml starts
 * DHCP (leases in MySQL), TFTP and HTTP boot beside the gRPC API. Reached on
 * loopback: DHCP through a relay stand-in (giaddr), TFTP with tftp-hpa's
 * client, HTTP with fetch. The iPXE script's agent token is checked against
 * the real AgentRegistry.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRegistry } from '../../proto/gen/bm/v1/agent_registry_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { freePort, runBmctl, startControllerProcess, type ControllerProcess, freeUdpPort } from '../../controller/lab/index.ts';
import { MessageType, requestFor, startRelay, type Relay } from './dhcp-relay.ts';
import { requirePeer } from './peers.ts';

const run = promisify(execFile);

let dir: string;
let ctl: ControllerProcess;
let admin: RpcConnection;
let db: DbHandle;
let relay: Relay;
let dhcpPort: number;
let tftpPort: number;
let httpPort: number;
const kernelBytes = Buffer.from('a pretend deploy kernel\n'.repeat(1000));

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'bm-ctl-boot-'));
  await mkdir(path.join(dir, 'http/deploy'), { recursive: true });
  await mkdir(path.join(dir, 'tftp'), { recursive: true });
  await writeFile(path.join(dir, 'http/deploy/vmlinuz'), kernelBytes);
  relay = await startRelay('127.0.0.1');
  dhcpPort = await freeUdpPort();
  tftpPort = await freeUdpPort();
  httpPort = await freePort();
  ctl = await startControllerProcess({
    extraToml: [
      '[boot]',
      'server_address = "127.0.0.1"',
      'bind_address = "127.0.0.1"',
      'mode = "full"',
      'range_start = "127.0.0.100"',
      'range_end = "127.0.0.101"',
      `dhcp_port = ${dhcpPort}`,
      `relay_port = ${relay.port}`,
      `tftp_port = ${tftpPort}`,
      `http_port = ${httpPort}`,
      `tftp_root = "${path.join(dir, 'tftp')}"`,
      `http_root = "${path.join(dir, 'http')}"`,
    ].join('\n'),
  });
  admin = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
  db = await openDatabase(ctl.databaseUrl, { connectionLimit: 2 });
}, 60_000);

afterAll(async () => {
  admin?.close();
  await db?.close();
  await relay?.close();
  await ctl?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** GET with curl from a chosen loopback source address (the lease gate looks at it). */
async function curlFrom(source: string, url: string, extra: string[] = []): Promise<{ status: number; body: Buffer }> {
  const out = path.join(dir, `curl-${Math.random().toString(36).slice(2)}`);
  const { stdout } = await run('curl', ['-sS', '--interface', source, '-o', out, '-w', '%{http_code}', ...extra, url]);
  const body = await readFile(out).catch(() => Buffer.alloc(0));
  await rm(out, { force: true });
  return { status: Number(stdout), body };
}

async function enroll(mac: string): Promise<string> {
  const node = await admin.client(NodeService).createNode({
    pmAddress: '192.0.2.10',
    pmUser: 'admin',
    pmPassword: 'boot-test-secret',
    cpus: 2,
    memoryMb: 2048,
    localGb: 20,
    cpuArch: 'x86_64',
    mac,
  });
  return node.uuid;
}

/** GET from a given loopback source address (the boot port checks who asks). */
function get(url: string, localAddress: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { localAddress }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

async function waitForState(id: string, state: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const n = await admin.client(NodeService).getNode({ id });
    if (n.provisionState === state) return;
    if (Date.now() > deadline) throw new Error(`node ${id} is ${n.provisionState}, not ${state} (last_error: ${n.lastError})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('controller with [boot] configured', () => {
  it('leases to an enrolled MAC through a relay, with the lease committed in MySQL, and ignores unknown MACs', async () => {
    const mac = '52:54:00:b0:00:01';
    await enroll(mac);
    const to = { address: '127.0.0.1', port: dhcpPort };
    const offer = await relay.exchange(to, mac, MessageType.discover, [], 3000);
    expect(offer?.yiaddr).toBe('127.0.0.100');
    const ack = await relay.exchange(to, mac, MessageType.request, requestFor(offer!.yiaddr, '127.0.0.1'), 3000);
    expect(ack?.yiaddr).toBe('127.0.0.100');
    const [rows] = await db.pool.query<import('mysql2/promise').RowDataPacket[]>(
      "SELECT mac, state FROM dhcp_leases WHERE state = 'bound'",
    );
    expect(rows.map((r) => r.mac)).toEqual([mac]);
    expect(await relay.exchange(to, '52:54:00:b0:00:99', MessageType.discover, [], 800)).toBeNull();
  });

  it('carries the token the conductor armed for this boot once: a second fetch gets none and revokes nothing', async () => {
    const mac = '52:54:00:b0:00:02';
    // The fake driver: the conductor's flow runs as for a real BMC, without one.
    const node = await admin.client(NodeService).createNode({
      pmAddress: 'fake-bmc-02',
      pmUser: 'admin',
      pmPassword: 'boot-test-secret',
      cpus: 2,
      memoryMb: 2048,
      localGb: 20,
      cpuArch: 'x86_64',
      mac,
      powerDriver: 'fake',
    });
    const uuid = node.uuid;
    const url = `http://127.0.0.1:${httpPort}/boot/${mac}.ipxe`;
    // Enrolled but not in an operation: nothing to boot.
    expect((await fetch(url)).status).toBe(404);
    await admin.client(NodeService).provision({ id: uuid, verb: 'manage' });
    await waitForState(uuid, 'manageable');
    // provide: the conductor arms a token, sets PXE, powers on, and waits for the agent (cleaning).
    await admin.client(NodeService).provision({ id: uuid, verb: 'provide' });
    // The machine takes its lease; only that address gets the script with the token.
    const to = { address: '127.0.0.1', port: dhcpPort };
    const offer = await relay.exchange(to, mac, MessageType.discover, [], 3000);
    const ack = await relay.exchange(to, mac, MessageType.request, requestFor(offer!.yiaddr, '127.0.0.1'), 3000);
    const leased = ack!.yiaddr;
    const stranger = await get(url, '127.0.0.1');
    expect(stranger.status).toBe(403);
    expect(stranger.body).not.toContain('bm.token');
    const script = (await get(url, leased)).body;
    expect(script).toMatch(/^#!ipxe/);
    expect(script).toContain(`bm.node=${uuid}`);
    expect(script).toContain('bm.purpose=clean');
    // The suite's controllers serve TLS: the ramdisk is told to verify the API against the CA the boot port serves.
    expect(script).toContain(`bm.controller=https://127.0.0.1:${ctl.url.split(':')[1]}`);
    expect(script).toContain(
      `bm.ca=${createHash('sha256')
        .update(await readFile(ctl.ca!))
        .digest('hex')}`,
    );
    expect(script).toContain(`bm.ca_url=http://127.0.0.1:${httpPort}/ca.pem`);
    expect(script).toContain(`http://127.0.0.1:${httpPort}/images/deploy/vmlinuz`);
    const token = /bm\.token=(\S+)/.exec(script)?.[1];
    expect(token).toBeDefined();
    const agent = connect(ctl.url, { metadata: { authorization: `Bearer ${token}` } }).client(AgentRegistry);
    expect(await agent.lookup({ macs: [mac] })).toMatchObject({ nodeUuid: uuid });
    // A second fetch (a stranger, or a retry) gets a script without a token, and the first one keeps working.
    const second = (await get(url, leased)).body;
    expect(second).not.toMatch(/bm\.token=/);
    expect(await agent.lookup({ macs: [mac] })).toMatchObject({ nodeUuid: uuid });
    // Neither the token nor the BMC password is in the controller's log.
    expect(ctl.logs()).not.toContain(token!);
    expect(ctl.logs()).not.toContain('boot-test-secret');
  });

  it('streams kernels from the image store and from http_root, with ranges, to the leased address only', async () => {
    const file = path.join(dir, 'kernel.aki');
    const aki = Buffer.from('an uploaded kernel image '.repeat(4096));
    await writeFile(file, aki);
    const made = await runBmctl([
      '--url',
      ctl.url,
      '--token',
      ctl.token,
      'image',
      'create',
      file,
      '--name',
      'deploy-kernel',
      '--disk-format',
      'aki',
      '--json',
    ]);
    expect(made.code).toBe(0);
    // The first test's DORA leased 127.0.0.100: loopback lets us fetch from that address.
    const leased = '127.0.0.100';
    const full = await curlFrom(leased, `http://127.0.0.1:${httpPort}/images/deploy-kernel`);
    expect(full.status).toBe(200);
    expect(full.body.equals(aki)).toBe(true);
    const part = await curlFrom(leased, `http://127.0.0.1:${httpPort}/images/deploy-kernel`, ['-r', '100-199']);
    expect(part.status).toBe(206);
    expect(part.body.equals(aki.subarray(100, 200))).toBe(true);
    const fromRoot = await curlFrom(leased, `http://127.0.0.1:${httpPort}/images/deploy/vmlinuz`);
    expect(fromRoot.body.equals(kernelBytes)).toBe(true);
    expect((await curlFrom(leased, `http://127.0.0.1:${httpPort}/images/..%2f..%2fetc%2fpasswd`)).status).toBeGreaterThanOrEqual(400);
    // A stranger (no lease) gets nothing, not even a kernel.
    const stranger = await curlFrom('127.0.0.1', `http://127.0.0.1:${httpPort}/images/deploy-kernel`);
    expect(stranger.status).toBe(403);
    expect(stranger.body.includes(aki.subarray(0, 25))).toBe(false);
    // The boot servers log through the controller's logger: the refusal is there, with the rule.
    const refusals = ctl
      .logs()
      .split('\n')
      .filter((l) => l.includes('boot image refused to a non-provisioning address'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(refusals).toContainEqual(
      expect.objectContaining({
        component: 'http-boot',
        path: '/images/deploy-kernel',
        rule: 'holds a DHCP lease from this controller group',
      }),
    );
  });

  it("refuses a tenant's raw and qcow2 images on the boot port, even to a leased address", async () => {
    const raw = path.join(dir, 'tenant.raw');
    const tenantBytes = Buffer.alloc(1024 * 1024, 'tenant-secret-disk ');
    await writeFile(raw, tenantBytes);
    const qcow2 = path.join(dir, 'tenant.qcow2');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    for (const [name, file, format] of [
      ['tenant-raw', raw, 'raw'],
      ['tenant-qcow2', qcow2, 'qcow2'],
    ] as const) {
      const made = await runBmctl([
        '--url',
        ctl.url,
        '--token',
        ctl.token,
        'image',
        'create',
        file,
        '--name',
        name,
        '--disk-format',
        format,
        '--json',
      ]);
      expect(made.code, made.stderr).toBe(0);
      const got = await curlFrom('127.0.0.100', `http://127.0.0.1:${httpPort}/images/${name}`);
      expect(got.status, name).toBe(403);
      expect(got.body.includes(Buffer.from('tenant-secret-disk'))).toBe(false);
      const uuid = (JSON.parse(made.stdout) as { uuid: string }).uuid;
      expect((await curlFrom('127.0.0.100', `http://127.0.0.1:${httpPort}/images/${uuid}`)).status, uuid).toBe(403);
    }
  });

  it('serves Prometheus metrics on the HTTP boot port, the boot counters among them', async () => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    // The first test's DORA: one ACK, and at least the unknown MAC ignored.
    expect(text).toMatch(/^bm_dhcp_events\{kind="acks"\} 2$/m); // the relay test's lease and the provided node's
    expect(text).toMatch(/^bm_dhcp_events\{kind="unknownMac"\} [1-9]/m);
    expect(text).toMatch(/^bm_http_boot_events\{kind="scripts"\} [1-9]/m);
    expect(text).toContain('bm_power_sync_calls_total');
  });

  it('serves iPXE from Debian’s ipxe package over TFTP to tftp-hpa', async () => {
    const tftp = requirePeer('/usr/bin/tftp');
    const out = path.join(dir, 'fetched.kpxe');
    await run(tftp, ['127.0.0.1', String(tftpPort), '-m', 'binary', '-c', 'get', 'undionly.kpxe', out], { timeout: 20_000 });
    expect((await readFile(out)).equals(await readFile('/usr/lib/ipxe/undionly.kpxe'))).toBe(true);
  });
});
