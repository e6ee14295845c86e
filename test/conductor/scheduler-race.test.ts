/**
 * Two controller processes sharing one database take 200 concurrent boots
 * for 100 free nodes: exactly 100 get a node, 100 are told "no valid node",
 * and no node ever holds two instances (the claim is one conditional UPDATE).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { InstanceService } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { runBmctl, startControllerProcess, type ControllerProcess } from '../../controller/lab/index.ts';

const NODES = 100;
const BOOTS = 200;

let dir: string;
let a: ControllerProcess;
let b: ControllerProcess;
let apiA: RpcConnection;
let apiB: RpcConnection;
let db: DbHandle;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-race-'));
  // Both controllers share the secret key, as a real cluster does.
  const env = { BM_SECRETS_KEY: randomBytes(32).toString('base64') };
  const extraToml = ['[conductor]', 'callback_timeout_s = 3', 'poll_ms = 500'].join('\n');
  a = await startControllerProcess({ env, extraToml, logLevel: 'warn' });
  // One cluster: the same database and NATS prefix (a boot's deploy runs at its node's owner, reached over NATS).
  b = await startControllerProcess({ env, extraToml, logLevel: 'warn', databaseUrl: a.databaseUrl, natsPrefix: a.natsPrefix });
  apiA = connect(a.url, { metadata: { authorization: `Bearer ${a.token}` } });
  apiB = connect(b.url, { metadata: { authorization: `Bearer ${b.token}` } });
  db = await openDatabase(a.databaseUrl, { connectionLimit: 2 });
  const nodes = apiA.client(NodeService);
  for (let i = 0; i < NODES; i++) {
    const hex = i.toString(16).padStart(4, '0');
    await nodes.createNode({
      name: `race-${i}`,
      pmAddress: `fake-${i}`,
      pmUser: 'admin',
      pmPassword: 'race-secret',
      powerDriver: 'fake',
      cpus: 4 + (i % 3),
      memoryMb: 8192,
      localGb: 10,
      cpuArch: 'x86_64',
      mac: `52:54:00:ee:${hex.slice(0, 2)}:${hex.slice(2)}`,
    });
  }
  // Fixture: the nodes as cleaning would leave them (cleaning itself is tested with real agents elsewhere).
  await db.pool.query("UPDATE nodes SET provision_state = 'available'");
  const image = path.join(dir, 'tiny.raw');
  await writeFile(image, randomBytes(4096));
  await truncate(image, 1024 * 1024);
  const env2 = { BM_URL: a.url, BM_TOKEN: a.token };
  expect((await runBmctl(['image', 'create', image, '--name', 'race-image', '--disk-format', 'raw'], env2)).code).toBe(0);
  expect((await runBmctl(['flavor', 'create', 'race', '--ram', '4096', '--disk', '1', '--cpus', '2'], env2)).code).toBe(0);
}, 120_000);

afterAll(async () => {
  apiA?.close();
  apiB?.close();
  await db?.close();
  await b?.stop({ keepDatabase: true });
  await a?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('scheduling under contention', () => {
  it('gives 100 of 200 concurrent boots through two controllers a node each, and never one node twice', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: BOOTS }, (_, i) =>
        (i % 2 === 0 ? apiA : apiB)
          .client(InstanceService)
          .createInstance({ name: `vm-${i}`, flavor: 'race', image: 'race-image' }, { timeoutMs: 60_000 }),
      ),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(ok).toHaveLength(NODES);
    expect(refused).toHaveLength(BOOTS - NODES);
    for (const r of refused)
      expect(r.reason).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/^no valid node/) });
    const [nodes] = await db.pool.query<RowDataPacket[]>(
      'SELECT COUNT(*) AS n, COUNT(DISTINCT instance_uuid) AS d FROM nodes WHERE instance_uuid IS NOT NULL',
    );
    expect(nodes[0]).toMatchObject({ n: NODES, d: NODES });
    const [instances] = await db.pool.query<RowDataPacket[]>('SELECT COUNT(*) AS n, COUNT(DISTINCT node_uuid) AS d FROM instances');
    expect(instances[0]).toMatchObject({ n: NODES, d: NODES });
    // Every claimed node names the instance that names it.
    const [pairs] = await db.pool.query<RowDataPacket[]>(
      'SELECT COUNT(*) AS n FROM instances i JOIN nodes n ON n.uuid = i.node_uuid AND n.instance_uuid = i.uuid',
    );
    expect(pairs[0]).toMatchObject({ n: NODES });
  }, 120_000);
});
