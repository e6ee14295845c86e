/**
 * A controller starts at most [conductor] deploy_start_concurrency deploys at
 * once (token, bootdev, power-on); the boots beyond it are still answered at
 * once, their nodes claimed and their instances BUILD. The queue lives in the
 * rows: a deploy still waiting for its start when its controller died (its
 * node `deploying`, reserved, no token armed, powered off) is started by the
 * controller when it comes back.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlavorService } from '../../proto/gen/bm/v1/flavor_pb.js';
import { InstanceService } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { type ControllerProcess, runBmctl, startControllerProcess, uniqueDatabaseUrl } from '../../controller/lab/index.ts';
import { parseDatabaseUrl } from '../../db/connect.ts';
import { dropDatabase } from '../../db/migrate.ts';

const NODES = 12;
const env = { BM_SECRETS_KEY: randomBytes(32).toString('base64') };
const toml = [
  '[controller]',
  'id = "ctl-paced"',
  '[conductor]',
  'deploy_start_concurrency = 1',
  'callback_timeout_s = 3600',
  'poll_ms = 200',
  '[power]',
  'sync_interval_s = 3600',
].join('\n');

let dir: string;
let ctl: ControllerProcess | undefined;
let sql: mysql.Connection | undefined;
const databaseUrl = uniqueDatabaseUrl('bm_deploy_starts');

function api(c: ControllerProcess): RpcConnection {
  return connect(c.url, { metadata: { authorization: `Bearer ${c.token}` } });
}

/** Polls until `count` of `uuids` wait for their agents, powered on with a token armed; the count reached. */
async function waitingForAgents(uuids: readonly string[], timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [[row]] = await sql!.query<mysql.RowDataPacket[]>(
      "SELECT COUNT(*) AS n FROM nodes WHERE uuid IN (?) AND provision_state = 'wait-callback' AND power_state = 'on' AND agent_token_hash IS NOT NULL",
      [uuids],
    );
    const n = Number(row!.n);
    if (n === uuids.length || Date.now() >= deadline) return n;
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-deploy-starts-'));
});

afterAll(async () => {
  await sql?.end();
  await ctl?.stop({ keepDatabase: true });
  await dropDatabase(databaseUrl).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('deploy starts paced by the controller', () => {
  it('with one deploy start at a time, answers every boot of a storm BUILD and starts every deploy; a queued one starts after a restart', async () => {
    ctl = await startControllerProcess({ databaseUrl, env, extraToml: toml, logLevel: 'warn' });
    const p = parseDatabaseUrl(databaseUrl);
    sql = await mysql.createConnection({ host: p.host, port: p.port, user: p.user, database: p.database });
    let conn = api(ctl);
    const nodes = conn.client(NodeService);
    for (let i = 0; i < NODES; i++)
      await nodes.createNode({
        name: `paced-${i}`,
        pmAddress: `fake-paced-${i}`,
        pmUser: 'admin',
        pmPassword: 'paced-secret',
        powerDriver: 'fake',
        cpuArch: 'x86_64',
        mac: `52:54:03:00:00:${i.toString(16).padStart(2, '0')}`,
        cpus: 4,
        memoryMb: 8192,
        localGb: 50,
      });
    // Fixture: the nodes as cleaning leaves them (cleaning itself is tested with real agents elsewhere).
    await sql.query("UPDATE nodes SET provision_state = 'available'");
    const image = path.join(dir, 'tiny.raw');
    await writeFile(image, randomBytes(4096));
    await truncate(image, 1024 * 1024);
    const created = await runBmctl(['image', 'create', image, '--name', 'paced-image', '--disk-format', 'raw'], {
      BM_URL: ctl.url,
      BM_TOKEN: ctl.token,
    });
    expect(created.code, created.stderr).toBe(0);
    await conn.client(FlavorService).createFlavor({ name: 'paced', ramMb: 4096, diskGb: 1, cpus: 2 });

    const booted = await Promise.all(
      Array.from({ length: NODES }, (_, i) =>
        conn.client(InstanceService).createInstance({ name: `paced-${i}`, flavor: 'paced', image: 'paced-image' }),
      ),
    );
    expect(booted.map((b) => b.state)).toEqual(Array(NODES).fill('BUILD'));
    const uuids = booted.map((b) => b.nodeUuid);
    expect(new Set(uuids).size).toBe(NODES);
    expect(await waitingForAgents(uuids, 30_000)).toBe(NODES);

    // A deploy still queued when its controller died: claimed and reserved, no token armed, never powered on.
    conn.close();
    await ctl.stop({ keepDatabase: true });
    ctl = undefined;
    const queued = uuids.slice(0, 3);
    await sql.query(
      "UPDATE nodes SET provision_state = 'deploying', power_state = 'off', reservation = 'ctl-paced', agent_token_hash = NULL, agent_token_sealed = NULL, agent_token_expires_at = NULL WHERE uuid IN (?)",
      [queued],
    );
    ctl = await startControllerProcess({ databaseUrl, env, extraToml: toml, logLevel: 'warn' });
    expect(await waitingForAgents(queued, 30_000), ctl.logs()).toBe(queued.length);
    conn = api(ctl);
    try {
      const instances = await conn.client(InstanceService).listInstances({});
      expect(instances.instances.filter((i) => queued.includes(i.nodeUuid)).map((i) => i.state)).toEqual(['BUILD', 'BUILD', 'BUILD']);
    } finally {
      conn.close();
    }
  }, 180_000);
});
