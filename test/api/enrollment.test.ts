/**
 * The enrollment API against a real controller process, a real MariaDB and a
 * real NATS server, through a real grpc-js client over TCP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { fromBinary } from '@bufbuild/protobuf';
import { connect as natsConnect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import mysql from 'mysql2/promise';
import { EventSchema, EventService, type Event } from '../../proto/gen/bm/v1/event_pb.js';
import { NodeService, type CreateNodeRequest } from '../../proto/gen/bm/v1/node_pb.js';
import { PortService } from '../../proto/gen/bm/v1/port_pb.js';
import { Health, HealthCheckResponse_ServingStatus } from '../../proto/gen/grpc/health/v1/health_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { CreateNodeRequestSchema } from '../../proto/gen/bm/v1/node_pb.js';
import { natsUrl, startControllerProcess, type ControllerProcess } from '../../controller/lab/index.ts';
import { parseDatabaseUrl } from '../../db/connect.ts';

const PASSWORD = 'Pw-9f8e7d6c5b4a';
let ctl: ControllerProcess;
let conn: RpcConnection;
let db: mysql.Connection;
let nc: NatsConnection;
let sub: Subscription;
const natsEvents: Event[] = [];
const apiOutputs: string[] = [];
let macCounter = 0x100;

function nextMac(): string {
  macCounter++;
  return `52:54:00:10:${(macCounter >> 8).toString(16).padStart(2, '0')}:${(macCounter & 0xff).toString(16).padStart(2, '0')}`;
}

type NodeFields = Partial<Omit<CreateNodeRequest, '$typeName' | '$unknown'>>;

function nodeRequest(overrides: NodeFields = {}): MessageInitShape<typeof CreateNodeRequestSchema> {
  return {
    pmAddress: '192.0.2.10',
    pmUser: 'admin',
    pmPassword: PASSWORD,
    cpus: 8,
    memoryMb: 16384,
    localGb: 100,
    cpuArch: 'x86_64',
    mac: nextMac(),
    ...overrides,
  };
}

async function rowCounts(): Promise<{ nodes: number; ports: number }> {
  const [n] = await db.query<mysql.RowDataPacket[]>('SELECT COUNT(*) AS c FROM nodes');
  const [p] = await db.query<mysql.RowDataPacket[]>('SELECT COUNT(*) AS c FROM ports');
  return { nodes: Number(n[0]!.c), ports: Number(p[0]!.c) };
}

beforeAll(async () => {
  ctl = await startControllerProcess();
  conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
  const p = parseDatabaseUrl(ctl.databaseUrl);
  db = await mysql.createConnection({ host: p.host, port: p.port, user: p.user, password: p.password, database: p.database });
  nc = await natsConnect({ servers: natsUrl });
  sub = nc.subscribe(`${ctl.natsPrefix}.events.node.*`);
  void (async () => {
    for await (const m of sub) natsEvents.push(fromBinary(EventSchema, m.data));
  })();
});

afterAll(async () => {
  conn?.close();
  sub?.unsubscribe();
  await nc?.close();
  await db?.end();
  await ctl?.stop();
});

describe('enrollment API', () => {
  it('serves grpc.health.v1 without a token', async () => {
    const health = connect(ctl.url).client(Health);
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it('creates a node with its first MAC as a port, in enroll, without the password', async () => {
    const nodes = conn.client(NodeService);
    const node = await nodes.createNode(nodeRequest({ name: 'rack1-u01', mac: '52:54:00:AA:00:01', group: 'rack1' }));
    apiOutputs.push(JSON.stringify(node, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    expect(node.provisionState).toBe('enroll');
    expect(node.pmPasswordSet).toBe(true);
    expect(node.pmPort).toBe(623);
    expect(node.macs).toEqual(['52:54:00:aa:00:01']);
    expect(node.group).toBe('rack1');
    const [rows] = await db.query<mysql.RowDataPacket[]>('SELECT pm_password_enc FROM nodes WHERE uuid = ?', [node.uuid]);
    expect(Buffer.from(rows[0]!.pm_password_enc as Buffer).includes(Buffer.from(PASSWORD))).toBe(false);
    const byName = await nodes.getNode({ id: 'rack1-u01' });
    expect(byName.uuid).toBe(node.uuid);
  });

  it('lists every node page by page with limit and marker, and filters', async () => {
    const nodes = conn.client(NodeService);
    for (let i = 0; i < 7; i++) await nodes.createNode(nodeRequest({ group: i % 2 ? 'odd' : 'even' }));
    const seen: string[] = [];
    let marker = '';
    let pages = 0;
    do {
      const page = await nodes.listNodes({ limit: 3, marker });
      expect(page.nodes.length).toBeLessThanOrEqual(3);
      seen.push(...page.nodes.map((n) => n.uuid));
      marker = page.nextMarker;
      pages++;
    } while (marker !== '');
    const total = (await rowCounts()).nodes;
    expect(seen.length).toBe(total);
    expect(new Set(seen).size).toBe(total);
    // One row beyond the page tells whether another exists, so no empty last page.
    expect(pages).toBe(Math.ceil(total / 3));
    expect([...seen].sort()).toEqual(seen);
    const odd = await nodes.listNodes({ group: 'odd' });
    expect(odd.nodes.length).toBe(3);
    expect(odd.nodes.every((n) => n.group === 'odd')).toBe(true);
    expect((await nodes.listNodes({ provisionState: 'active' })).nodes).toEqual([]);
    expect((await nodes.listNodes({ maintenance: false })).nodes.length).toBe(total);
    expect((await nodes.listNodes({ associated: 'false' })).nodes.length).toBe(total);
    expect((await nodes.listNodes({ associated: 'true' })).nodes.length).toBe(0);
  });

  it('updates only the given fields, bumps the version and checks expected_version', async () => {
    const nodes = conn.client(NodeService);
    const node = await nodes.createNode(nodeRequest());
    const updated = await nodes.updateNode({
      id: node.uuid,
      cpus: 64,
      maintenance: true,
      maintenanceReason: 'bad DIMM',
      expectedVersion: node.version,
    });
    expect(updated.cpus).toBe(64);
    expect(updated.memoryMb).toBe(node.memoryMb);
    expect(updated.maintenance).toBe(true);
    expect(updated.maintenanceReason).toBe('bad DIMM');
    expect(updated.version).toBe(node.version + 1n);
    await expect(nodes.updateNode({ id: node.uuid, cpus: 2, expectedVersion: node.version })).rejects.toMatchObject({
      code: status.ABORTED,
    });
    const cleared = await nodes.updateNode({ id: node.uuid, maintenance: false });
    expect(cleared.maintenanceReason).toBe('');
    const newPw = await nodes.updateNode({ id: node.uuid, pmPassword: 'another-Pw-1' });
    expect(newPw.pmPasswordSet).toBe(true);
    expect(JSON.stringify(newPw, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))).not.toContain('another-Pw-1');
  });

  it('deletes a node with its ports, and refuses while it is deploying or active', async () => {
    const nodes = conn.client(NodeService);
    const node = await nodes.createNode(nodeRequest());
    await db.query("UPDATE nodes SET provision_state = 'active' WHERE uuid = ?", [node.uuid]);
    await expect(nodes.deleteNode({ id: node.uuid })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/active/),
    });
    await db.query("UPDATE nodes SET provision_state = 'deploying' WHERE uuid = ?", [node.uuid]);
    await expect(nodes.deleteNode({ id: node.uuid })).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await db.query("UPDATE nodes SET provision_state = 'available' WHERE uuid = ?", [node.uuid]);
    await nodes.deleteNode({ id: node.uuid });
    await expect(nodes.getNode({ id: node.uuid })).rejects.toMatchObject({ code: status.NOT_FOUND });
    const [ports] = await db.query<mysql.RowDataPacket[]>('SELECT COUNT(*) AS c FROM ports WHERE node_uuid = ?', [node.uuid]);
    expect(Number(ports[0]!.c)).toBe(0);
  });

  it('adds, lists and deletes ports, normalising MACs and refusing duplicates with the owner named', async () => {
    const nodes = conn.client(NodeService);
    const ports = conn.client(PortService);
    const owner = await nodes.createNode(nodeRequest({ name: 'mac-owner', mac: '52:54:00:bb:00:01' }));
    const other = await nodes.createNode(nodeRequest());
    const added = await ports.createPort({ nodeId: other.uuid, mac: '52-54-00-BB-00-02' });
    expect(added.mac).toBe('52:54:00:bb:00:02');
    const listed = await ports.listPorts({ nodeId: other.uuid });
    expect(listed.ports.map((p) => p.mac).sort()).toEqual([...other.macs, '52:54:00:bb:00:02'].sort());
    const before = await rowCounts();
    const dup = await ports.createPort({ nodeId: other.uuid, mac: '5254.00bb.0001' }).catch((e: unknown) => e);
    expect(dup).toMatchObject({ code: status.ALREADY_EXISTS, details: expect.stringContaining(owner.uuid) });
    expect(dup).toMatchObject({ details: expect.stringContaining('mac-owner') });
    const dupNode = await nodes.createNode(nodeRequest({ mac: '52:54:00:bb:00:01' })).catch((e: unknown) => e);
    expect(dupNode).toMatchObject({ code: status.ALREADY_EXISTS, details: expect.stringContaining(owner.uuid) });
    expect(await rowCounts()).toEqual(before);
    await ports.deletePort({ id: '52:54:00:BB:00:02' });
    expect((await ports.listPorts({ nodeId: other.uuid })).ports.length).toBe(1);
  });

  it('publishes every create, update and delete on <prefix>.events.node.<uuid>', async () => {
    const nodes = conn.client(NodeService);
    const ports = conn.client(PortService);
    const node = await nodes.createNode(nodeRequest());
    await nodes.updateNode({ id: node.uuid, cpus: 4 });
    const port = await ports.createPort({ nodeId: node.uuid, mac: nextMac() });
    await ports.deletePort({ id: port.uuid });
    await nodes.deleteNode({ id: node.uuid });
    await expect
      .poll(() => natsEvents.filter((e) => e.nodeUuid === node.uuid).map((e) => e.type), { timeout: 5000 })
      .toEqual(['node.created', 'node.updated', 'port.created', 'port.deleted', 'node.deleted']);
  });

  it('streams events to EventService.Watch, filtered by node', async () => {
    const nodes = conn.client(NodeService);
    const watched = await nodes.createNode(nodeRequest());
    const abort = new AbortController();
    const got: string[] = [];
    const watching = (async () => {
      for await (const e of conn.client(EventService).watch({ nodeUuid: watched.uuid }, { signal: abort.signal })) {
        got.push(`${e.nodeUuid}:${e.type}`);
        if (got.length === 2) abort.abort();
      }
    })().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    await nodes.createNode(nodeRequest());
    await nodes.updateNode({ id: watched.uuid, cpus: 2 });
    await nodes.updateNode({ id: watched.uuid, cpus: 3 });
    await watching;
    expect(got).toEqual([`${watched.uuid}:node.updated`, `${watched.uuid}:node.updated`]);
  });
});

describe('bad input', () => {
  const cases: [string, NodeFields, string][] = [
    ['malformed MAC', { mac: '52:54:00:zz:00:01' }, 'mac'],
    ['multicast MAC', { mac: '01:00:5e:00:00:01' }, 'mac'],
    ['zero cpus', { cpus: 0 }, 'cpus'],
    ['absurd cpus', { cpus: 4_000_000_000 }, 'cpus'],
    ['zero memory', { memoryMb: 0 }, 'memory_mb'],
    ['absurd disk', { localGb: 4_000_000_000 }, 'local_gb'],
    ['unknown arch', { cpuArch: 'vax' }, 'cpu_arch'],
    ['empty pm address', { pmAddress: '' }, 'pm_address'],
    ['pm address with spaces', { pmAddress: 'bad host' }, 'pm_address'],
    // Larger requests are refused by size before decoding (input-limits.test.ts).
    ['100 kB name', { name: 'n'.repeat(100_000) }, 'name'],
    ['100 kB pm user', { pmUser: 'u'.repeat(100_000) }, 'pm_user'],
    ['100 kB password', { pmPassword: 'p'.repeat(100_000) }, 'pm_password'],
    ['missing password', { pmPassword: '' }, 'pm_password'],
    ['pm port out of range', { pmPort: 70000 }, 'pm_port'],
    ['unknown power driver', { powerDriver: 'telnet' }, 'power_driver'],
    ['uuid-shaped name', { name: '01a210ae-1f6a-7005-a021-45f8877c5ca4' }, 'name'],
  ];

  it.each(cases)('refuses a %s with INVALID_ARGUMENT naming the field, writing nothing', async (_what, overrides, field) => {
    const before = await rowCounts();
    const err = await conn
      .client(NodeService)
      .createNode(nodeRequest(overrides))
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(new RegExp(`^${field}: `)) });
    expect((err as { details: string }).details.length).toBeLessThan(300);
    expect(await rowCounts()).toEqual(before);
  });

  it('refuses bad list parameters with the field named', async () => {
    const nodes = conn.client(NodeService);
    await expect(nodes.listNodes({ limit: 5000 })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^limit: /),
    });
    await expect(nodes.listNodes({ marker: "x' OR 1=1" })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^marker: /),
    });
    await expect(nodes.getNode({ id: 'x'.repeat(100_000) })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    await expect(nodes.getNode({ id: 'x'.repeat(1_000_000) })).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED });
  });

  it('answers a wrong or missing token with UNAUTHENTICATED and no detail, writing nothing', async () => {
    const before = await rowCounts();
    const wrong = connect(ctl.url, { metadata: { authorization: 'Bearer not-the-token' } });
    const none = connect(ctl.url);
    for (const c of [wrong, none]) {
      const err = await c
        .client(NodeService)
        .createNode(nodeRequest())
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: status.UNAUTHENTICATED, details: 'a valid bearer token is required' });
      await expect(c.client(NodeService).listNodes({})).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
      c.close();
    }
    expect(await rowCounts()).toEqual(before);
  });

  it('keeps serving after all of the above', async () => {
    const node = await conn.client(NodeService).createNode(nodeRequest());
    expect(node.uuid).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('the BMC password never leaves the server', () => {
  it('appears in no log line, no NATS event and no API output', async () => {
    const nodes = conn.client(NodeService);
    const all = await nodes.listNodes({ limit: 1000 });
    apiOutputs.push(JSON.stringify(all, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    expect(all.nodes.length).toBeGreaterThan(5);
    expect(natsEvents.length).toBeGreaterThan(5);
    expect(ctl.logs().length).toBeGreaterThan(100);
    expect(ctl.logs()).not.toContain(PASSWORD);
    expect(ctl.logs()).not.toContain(ctl.token);
    expect(JSON.stringify(natsEvents.map((e) => ({ ...e, time: undefined })))).not.toContain(PASSWORD);
    for (const out of apiOutputs) expect(out).not.toContain(PASSWORD);
  });
});
