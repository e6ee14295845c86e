/**
 * No reservation outlives its controller: a controller killed (-9) in the
 * middle of cleaning leaves its node reserved; a controller of the same
 * cluster breaks that reservation once the dead one's heartbeat lapses,
 * ends the node in clean-failed with a way back, and the way back works.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBinary } from '@bufbuild/protobuf';
import { connect as connectNats } from '@nats-io/transport-node';
import { EventSchema } from '../../proto/gen/bm/v1/event_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect } from '../../proto/rpc/index.ts';
import {
  loopbackBootToml,
  type ControllerProcess,
  VirtualNode,
  freePort,
  freeUdpPort,
  natsUrl,
  runBmctl,
  startControllerProcess,
  uniqueDatabaseUrl,
  uniqueNatsPrefix,
} from '../../controller/lab/index.ts';
import { dropDatabase } from '../../db/migrate.ts';
import { createNodeWithBmctl } from '../support/bmctl-enroll.ts';

const MIB = 1024 * 1024;
let dir: string;
let a: ControllerProcess | undefined;
let b: ControllerProcess | undefined;
let m: VirtualNode | undefined;
const log: string[] = [];

async function bootToml(id: string, httpPort: number, tftpPort: number): Promise<string> {
  return [
    '[controller]',
    `id = "${id}"`,
    'heartbeat_interval_ms = 500',
    'dead_after_s = 3',
    '[conductor]',
    'callback_timeout_s = 600',
    'poll_ms = 200',
    await loopbackBootToml({ dir, httpPort, tftpPort }),
  ].join('\n');
}

async function nodeOf(ctl: ControllerProcess) {
  const conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
  try {
    return await conn.client(NodeService).getNode({ id: 'restart-1' });
  } finally {
    conn.close();
  }
}

const databases = new Set<string>();

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-restart-'));
});

afterAll(async () => {
  await m?.stop().catch(() => undefined);
  await b?.stop({ keepDatabase: true });
  await a?.stop();
  // Controllers stopped with keepDatabase (or killed) leave the shared database: it goes here.
  for (const url of databases) await dropDatabase(url).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('a controller killed mid-task', () => {
  it('leaves no reservation behind: a peer breaks it once the heartbeat lapses, and the way back works', async () => {
    const env = { BM_SECRETS_KEY: randomBytes(32).toString('base64') };
    const httpPort = await freePort();
    const tftpPort = await freeUdpPort();
    const databaseUrl = uniqueDatabaseUrl('bm_restart');
    databases.add(databaseUrl);
    // One cluster: one database, one secret key, one NATS prefix.
    const natsPrefix = uniqueNatsPrefix();
    a = await startControllerProcess({
      databaseUrl,
      env,
      natsPrefix,
      logLevel: 'warn',
      extraToml: await bootToml('ctl-a', httpPort, tftpPort),
    });
    const cli = (ctl: ControllerProcess) => ({ BM_URL: ctl.url, BM_TOKEN: ctl.token });
    m = new VirtualNode({
      name: 'restart-1',
      mac: '52:54:00:0e:00:01',
      bmcPassword: 'restart-secret',
      diskBytes: 16 * MIB,
      dir: path.join(dir, 'm'),
      bootUrl: `http://127.0.0.1:${httpPort}`,
      say: (msg) => log.push(msg),
    });
    await m.start();
    await createNodeWithBmctl(m, cli(a), { name: 'restart-1', cpus: 1, memoryMb: 1024, bmcPassword: 'restart-secret' });
    expect((await runBmctl(['node', 'manage', 'restart-1', '--wait', '--timeout', '60'], cli(a), 90_000)).code).toBe(0);

    // Cleaning starts, and waits for an agent that will not come (the machine does not network-boot).
    m.networkBoot = false;
    expect((await runBmctl(['node', 'provide', 'restart-1'], cli(a))).code).toBe(0);
    expect(await nodeOf(a)).toMatchObject({ provisionState: 'cleaning' });
    const before = await runBmctl(['--json', 'controller', 'list'], cli(a));
    expect(JSON.parse(before.stdout)).toEqual([expect.objectContaining({ id: 'ctl-a', alive: true, ownedNodes: 1, groups: ['default'] })]);
    // Controller events of the cluster, from before the kill: the death must be announced exactly once.
    const nc = await connectNats({ servers: natsUrl });
    const seen: { type: string; details: Record<string, string> }[] = [];
    const sub = nc.subscribe(`${natsPrefix}.events.controller.>`);
    const watching = (async () => {
      for await (const msg of sub) {
        const e = fromBinary(EventSchema, msg.data);
        seen.push({ type: e.type, details: { ...e.details } });
      }
    })();
    await nc.flush();
    process.kill(a.pid, 'SIGKILL');
    await a.stop({ keepDatabase: true });
    a = undefined;

    // A peer of the same cluster (same database and key, the dead one's boot ports).
    b = await startControllerProcess({
      databaseUrl,
      env,
      natsPrefix,
      logLevel: 'warn',
      extraToml: await bootToml('ctl-b', httpPort, tftpPort),
    });
    const deadline = Date.now() + 30_000;
    let node = await nodeOf(b);
    while (node.provisionState !== 'clean-failed' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      node = await nodeOf(b);
    }
    expect(node.provisionState).toBe('clean-failed');
    expect(node.lastError).toMatch(/interrupted: its controller \(ctl-a\) stopped while the node was cleaning; provide it again/);
    // The death was announced once, and the list shows the one live member owning the node.
    const announced = Date.now() + 10_000;
    while (!seen.some((e) => e.type === 'controller.dead') && Date.now() < announced) await new Promise((r) => setTimeout(r, 200));
    await new Promise((r) => setTimeout(r, 1000));
    sub.unsubscribe();
    await watching;
    await nc.close();
    expect(seen.filter((e) => e.type === 'controller.dead')).toEqual([
      { type: 'controller.dead', details: expect.objectContaining({ controller: 'ctl-a' }) },
    ]);
    expect(seen.some((e) => e.type === 'controller.joined' && e.details.controller === 'ctl-b')).toBe(true);
    const after = await runBmctl(['--json', 'controller', 'list'], cli(b));
    expect(JSON.parse(after.stdout)).toEqual([expect.objectContaining({ id: 'ctl-b', alive: true, ownedNodes: 1 })]);

    // The way back: the machine network-boots again, and provide cleans it into the pool through the peer.
    m.networkBoot = true;
    const provided = await runBmctl(['node', 'provide', 'restart-1', '--wait', '--timeout', '90'], cli(b), 120_000);
    expect(provided.code, `${provided.stdout}${provided.stderr}\n${log.join('\n')}`).toBe(0);
    expect((await nodeOf(b)).provisionState).toBe('available');
    // And nothing holds it: it can be taken out of the pool and deleted.
    expect((await runBmctl(['node', 'delete', 'restart-1'], cli(b))).code).toBe(0);
  }, 180_000);
});
