/**
 * Input the API refuses, against a real controller process: addresses that
 * are not addresses, control characters, a node with more ports than a
 * machine has, oversized or unauthenticated requests (refused before they
 * are decoded), and a database failure reported as one clear line.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { NodeService, type CreateNodeRequest, type CreateNodeRequestSchema } from '../../proto/gen/bm/v1/node_pb.js';
import { PortService } from '../../proto/gen/bm/v1/port_pb.js';
import { ImageService } from '../../proto/gen/bm/v1/image_pb.js';
import { connect, defaultCredentials, type RpcConnection } from '../../proto/rpc/index.ts';
import { parseDatabaseUrl } from '../../db/connect.ts';
import { dropDatabase } from '../../db/migrate.ts';
import { hashToken, newToken } from '../../controller/auth/tokens.ts';
import { MAX_PORTS_PER_NODE } from '../../controller/nodes/validate.ts';
import { freePort, runBmctl, startControllerProcess, uniqueDatabaseUrl, type ControllerProcess } from '../../controller/lab/index.ts';

const PASSWORD = 'Lim-Pw-4c3b2a';
let ctl: ControllerProcess;
let conn: RpcConnection;
let macCounter = 0;

function nextMac(): string {
  macCounter++;
  return `52:54:00:20:${(macCounter >> 8).toString(16).padStart(2, '0')}:${(macCounter & 0xff).toString(16).padStart(2, '0')}`;
}

type NodeFields = Partial<Omit<CreateNodeRequest, '$typeName' | '$unknown'>>;

function nodeRequest(overrides: NodeFields = {}): MessageInitShape<typeof CreateNodeRequestSchema> {
  return {
    pmAddress: '192.0.2.20',
    pmUser: 'admin',
    pmPassword: PASSWORD,
    cpus: 4,
    memoryMb: 4096,
    localGb: 50,
    cpuArch: 'x86_64',
    mac: nextMac(),
    ...overrides,
  };
}

/** A unary call with raw bytes as the request, so a test can send what no typed client would. */
function rawUnary(url: string, method: string, body: Buffer, token?: string): Promise<{ code: grpc.status; details: string }> {
  const client = new grpc.Client(url, defaultCredentials(url), { 'grpc.max_send_message_length': 64 * 1024 * 1024 });
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      method,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      metadata,
      { deadline: Date.now() + 30_000 },
      (err) => {
        client.close();
        resolve(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' });
      },
    );
  });
}

beforeAll(async () => {
  ctl = await startControllerProcess({ logLevel: 'info' });
  conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
});

afterAll(async () => {
  conn?.close();
  await ctl?.stop();
});

describe('what the API refuses', () => {
  it('takes a host name, an IPv4 or an IPv6 address as pm_address, and nothing else', async () => {
    const nodes = conn.client(NodeService);
    for (const bad of [':::::::', '1::2::3', '10.0.0.256', '[::1]', 'bmc 1', 'bmc\u0000.example']) {
      await expect(nodes.createNode(nodeRequest({ pmAddress: bad })), bad).rejects.toMatchObject({
        code: grpc.status.INVALID_ARGUMENT,
        details: expect.stringMatching(/^pm_address: /),
      });
    }
    for (const good of ['::1', 'fe80::1', '192.0.2.1', 'bmc-1.rack7.example', 'bmc1']) {
      expect((await nodes.createNode(nodeRequest({ pmAddress: good }))).pmAddress).toBe(good);
    }
    const node = await nodes.createNode(nodeRequest());
    await expect(nodes.updateNode({ id: node.uuid, pmAddress: ':::::::' })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^pm_address: /),
    });
  });

  it('refuses NUL and control characters in user names, passwords, properties and reasons', async () => {
    const nodes = conn.client(NodeService);
    const cases: [NodeFields, RegExp][] = [
      [{ pmUser: 'adm\u0000in' }, /^pm_user: must not contain NUL/],
      [{ pmUser: 'admin\u001b[2J' }, /^pm_user: /],
      [{ pmPassword: 'pw\u0000x' }, /^pm_password: /],
      [{ properties: { rack: 'r1\u0007' } }, /^properties: /],
      [{ properties: { 'ra\nck': 'r1' } }, /^properties: /],
    ];
    for (const [fields, message] of cases) {
      await expect(nodes.createNode(nodeRequest(fields))).rejects.toMatchObject({
        code: grpc.status.INVALID_ARGUMENT,
        details: expect.stringMatching(message),
      });
    }
    const node = await nodes.createNode(nodeRequest());
    await expect(nodes.updateNode({ id: node.uuid, pmUser: 'a\u0000' })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^pm_user: /),
    });
    await expect(nodes.updateNode({ id: node.uuid, maintenance: true, maintenanceReason: 'bad\u0000DIMM' })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^maintenance_reason: /),
    });
    await expect(nodes.getNode({ id: 'no\u0000de' })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    const images = conn.client(ImageService);
    await expect(
      images.createImage([{ part: { case: 'meta', value: { name: 'ctl-img', diskFormat: 'raw', properties: { os: 'linux\u0000' } } } }]),
    ).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/^properties: .*control characters/) });
    await expect(images.getImage({ id: 'img\u001b' })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^id: /),
    });
    // The refused value was stored nowhere.
    expect((await nodes.getNode({ id: node.uuid })).pmUser).toBe('admin');
  });

  it(`holds at most ${MAX_PORTS_PER_NODE} ports per node, even when adds race`, async () => {
    const node = await conn.client(NodeService).createNode(nodeRequest());
    const ports = conn.client(PortService);
    // One port exists; 80 racing adds may bring it to the limit and no further.
    const results = await Promise.allSettled(Array.from({ length: 80 }, () => ports.createPort({ nodeId: node.uuid, mac: nextMac() })));
    const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as grpc.ServiceError);
    expect(results.length - refused.length).toBe(MAX_PORTS_PER_NODE - 1);
    for (const err of refused) {
      expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(err.details).toBe(`node ${node.uuid} already has ${MAX_PORTS_PER_NODE} ports, the most a node may have; delete one first`);
    }
    expect((await conn.client(NodeService).getNode({ id: node.uuid })).macs).toHaveLength(MAX_PORTS_PER_NODE);
  });

  it('refuses an unauthenticated request before decoding it, and logs the refusals rate-limited', async () => {
    // Bytes that are no protobuf: decoding them fails. A refusal that comes
    // back as UNAUTHENTICATED (not a decode error) was made before decoding.
    const garbage = Buffer.alloc(7 * 1024 * 1024, 0xff);
    const refused = await rawUnary(ctl.url, '/bm.v1.NodeService/CreateNode', garbage, 'bm_not-a-valid-token');
    expect(refused).toEqual({ code: grpc.status.UNAUTHENTICATED, details: 'a valid bearer token is required' });
    expect((await rawUnary(ctl.url, '/bm.v1.NodeService/ListNodes', garbage)).code).toBe(grpc.status.UNAUTHENTICATED);
    // The one call with a large limit, image upload, refuses a stranger's chunk the same way.
    const stranger = connect(ctl.url, { metadata: { authorization: 'Bearer bm_stranger' } });
    try {
      await expect(
        stranger
          .client(ImageService)
          .createImage([
            { part: { case: 'meta', value: { name: 'stranger', diskFormat: 'raw' } } },
            { part: { case: 'chunk', value: new Uint8Array(4 * 1024 * 1024) } },
          ]),
      ).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    } finally {
      stranger.close();
    }
    const before = ctl
      .logs()
      .split('\n')
      .filter((l) => l.includes('refused unauthenticated call')).length;
    const probe = connect(ctl.url, { metadata: { authorization: 'Bearer wrong' } });
    try {
      for (let i = 0; i < 200; i++)
        await expect(probe.client(NodeService).listNodes({})).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    } finally {
      probe.close();
    }
    // The first refusal of the window was logged above; these 200 are summed up at the window's end.
    const after = ctl
      .logs()
      .split('\n')
      .filter((l) => l.includes('refused unauthenticated call')).length;
    expect(before).toBe(1);
    expect(after).toBe(1);
  });

  it('refuses an oversized request with RESOURCE_EXHAUSTED naming the limit, before decoding it', async () => {
    const big = 'x'.repeat(1000);
    const properties = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`k${i}`, big]));
    await expect(conn.client(NodeService).createNode(nodeRequest({ properties }))).rejects.toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: expect.stringMatching(
        /^request message of \d+ bytes is larger than \/bm\.v1\.NodeService\/CreateNode takes \(at most 524288 bytes\)$/,
      ),
    });
    // Garbage over the limit from an authenticated caller: refused by size, not by a decode error.
    expect(await rawUnary(ctl.url, '/bm.v1.NodeService/ListNodes', Buffer.alloc(600 * 1024, 0xff), ctl.token)).toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED,
    });
    // The controller keeps serving.
    expect((await conn.client(NodeService).listNodes({ limit: 1 })).nodes.length).toBe(1);
  });

  it('reports a database failure as one line with the reason, never the query', async () => {
    const p = parseDatabaseUrl(ctl.databaseUrl);
    const db = await mysql.createConnection({ host: p.host, port: p.port, user: p.user, password: p.password, database: p.database });
    try {
      // This test's own database: the controller's next node read fails.
      await db.query('RENAME TABLE ports TO ports_gone');
      const r = await runBmctl(['node', 'list'], { BM_URL: ctl.url, BM_TOKEN: ctl.token });
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(
        /^bmctl: error: database error: Table '[^']+\.ports' doesn't exist \(ER_NO_SUCH_TABLE\) \(INTERNAL\)$/,
      );
      expect(r.stderr).not.toMatch(/Failed query|select|params/i);
    } finally {
      await db.query('RENAME TABLE ports_gone TO ports');
      await db.end();
    }
    expect((await conn.client(NodeService).listNodes({ limit: 1 })).nodes.length).toBe(1);
  });

  it('says in one line why a controller cannot start on a database without its schema', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'bm-limits-'));
    const databaseUrl = uniqueDatabaseUrl('bm_test_empty');
    const p = parseDatabaseUrl(databaseUrl);
    const admin = await mysql.createConnection({ host: p.host, port: p.port, user: p.user, password: p.password });
    try {
      await admin.query(`CREATE DATABASE \`${p.database}\``);
      const config = [
        '[api]',
        `listen = "127.0.0.1:${await freePort()}"`,
        `tokens = ["${hashToken(newToken())}"]`,
        '[database]',
        `url = "${databaseUrl}"`,
        '[secrets]',
        `key_file = "${path.join(dir, 'secret.key')}"`,
        '[images]',
        `store_path = "${path.join(dir, 'images')}"`,
      ].join('\n');
      await writeFile(path.join(dir, 'bm.toml'), config);
      const r = await runBmctl(['controller', 'start', '--config', path.join(dir, 'bm.toml')]);
      expect(r.code).toBe(1);
      const line = r.stderr.split('\n').filter((l) => l.startsWith('bmctl: error:'));
      expect(line).toHaveLength(1);
      expect(line[0]).toBe(
        `bmctl: error: database mysql://${p.user}@${p.host}:${p.port}/${p.database} is not ready (Table '${p.database}.nodes' doesn't exist (ER_NO_SUCH_TABLE)); run \`bmctl db sync\` first`,
      );
      expect(r.stderr).not.toMatch(/Failed query/);
    } finally {
      await admin.end();
      await dropDatabase(databaseUrl).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
