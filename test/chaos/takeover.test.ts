/**
 * A dead controller's deploy finishes anyway: two controllers of one cluster
 * (one database, NATS prefix, secret key and image store); the one streaming
 * an image is killed with SIGKILL mid-stream; the other breaks its
 * reservation once its heartbeat lapses and continues the stream from the
 * node's checkpoint to the agent that is still running, to ACTIVE, with the
 * image's bytes on the disk.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../db/connect.ts';
import { InstanceService } from '../../proto/gen/bm/v1/instance_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import {
  loopbackBootToml,
  type ControllerProcess,
  VirtualNode,
  freePort,
  freeUdpPort,
  runBmctl,
  sha256OfFilePrefix,
  startControllerProcess,
  uniqueDatabaseUrl,
  uniqueNatsPrefix,
} from '../../controller/lab/index.ts';
import { dropDatabase } from '../../db/migrate.ts';
import { createNodeWithBmctl } from '../support/bmctl-enroll.ts';

const MIB = 1024 * 1024;
const IMAGE_BYTES = 512 * MIB;
let dir: string;
let a: ControllerProcess | undefined;
let b: ControllerProcess | undefined;
let m: VirtualNode | undefined;
const conns: RpcConnection[] = [];
const log: string[] = [];
/** What the second case needs of the first: the cluster's shared settings, the image's digest. */
const clusterOf = new Map<string, { databaseUrl: string; natsPrefix: string; key: string }>();
const imageShaOf = new Map<string, string>();
/** The id of the controller the first case leaves running (held in `b`). */
let bId = 'ctl-b';

async function toml(id: string, httpPort: number, tftpPort: number): Promise<string> {
  return [
    '[controller]',
    `id = "${id}"`,
    'heartbeat_interval_ms = 500',
    'dead_after_s = 3',
    '[conductor]',
    'callback_timeout_s = 120',
    'poll_ms = 200',
    await loopbackBootToml({ dir, httpPort, tftpPort }),
  ].join('\n');
}

/** Which controller holds the node's reservation: the one running its deploy. */
async function holderOf(databaseUrl: string, nodeUuid: string): Promise<string | null> {
  const db = await openDatabase(databaseUrl, { connectionLimit: 1 });
  try {
    const [rows] = await db.pool.query('SELECT reservation FROM nodes WHERE uuid = ?', [nodeUuid]);
    return (rows as { reservation: string | null }[])[0]?.reservation ?? null;
  } finally {
    await db.close();
  }
}

const databases = new Set<string>();

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-takeover-'));
  await mkdir(path.join(dir, 'images'), { recursive: true });
});

afterAll(async () => {
  for (const c of conns) c.close();
  await m?.stop().catch(() => undefined);
  await b?.stop({ keepDatabase: true });
  await a?.stop();
  // Controllers stopped with keepDatabase (or killed) leave the shared database: it goes here.
  for (const url of databases) await dropDatabase(url).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('takeover', () => {
  it('finishes the deploy of a controller killed mid-stream, from the checkpoint', async () => {
    // One cluster: database, NATS prefix, secret key and image store shared (as with a NATS object store or NFS).
    const env = { BM_SECRETS_KEY: randomBytes(32).toString('base64'), BM_IMAGES_STORE_PATH: path.join(dir, 'images') };
    const databaseUrl = uniqueDatabaseUrl('bm_takeover');
    databases.add(databaseUrl);
    const natsPrefix = uniqueNatsPrefix();
    clusterOf.set('shared', { databaseUrl, natsPrefix, key: env.BM_SECRETS_KEY });
    const httpA = await freePort();
    a = await startControllerProcess({
      databaseUrl,
      env,
      natsPrefix,
      logLevel: 'warn',
      extraToml: await toml('ctl-a', httpA, await freeUdpPort()),
    });
    b = await startControllerProcess({
      databaseUrl,
      env,
      natsPrefix,
      logLevel: 'warn',
      extraToml: await toml('ctl-b', await freePort(), await freeUdpPort()),
    });
    const cliA = { BM_URL: a.url, BM_TOKEN: a.token };

    const raw = path.join(dir, 'image.raw');
    const handle = await open(raw, 'w');
    await handle.truncate(IMAGE_BYTES);
    for (let mib = 0; mib < IMAGE_BYTES / MIB; mib += 2) await handle.write(randomBytes(MIB), 0, MIB, mib * MIB);
    await handle.close();
    const imageSha = await sha256OfFilePrefix(raw, IMAGE_BYTES);
    imageShaOf.set('big', imageSha);
    expect((await runBmctl(['image', 'create', raw, '--name', 'big', '--disk-format', 'raw'], cliA, 180_000)).code).toBe(0);

    m = new VirtualNode({
      name: 'tk-1',
      mac: '52:54:00:0f:00:01',
      bmcPassword: 'takeover-secret',
      diskBytes: IMAGE_BYTES + 128 * MIB,
      dir: path.join(dir, 'm'),
      bootUrl: `http://127.0.0.1:${httpA}`,
      say: (msg) => log.push(msg),
    });
    await m.start();
    await createNodeWithBmctl(m, cliA, { name: 'tk-1', cpus: 2, memoryMb: 2048, bmcPassword: 'takeover-secret' });
    for (const verb of ['manage', 'provide']) {
      const r = await runBmctl(['node', verb, 'tk-1', '--wait', '--timeout', '120'], cliA, 150_000);
      expect(r.code, `${r.stdout}${r.stderr}\n${log.join('\n')}`).toBe(0);
    }
    expect((await runBmctl(['flavor', 'create', 'tk', '--ram', '1024', '--disk', '1', '--cpus', '1'], cliA)).code).toBe(0);

    const apiA = connect(a.url, { metadata: { authorization: `Bearer ${a.token}` } });
    const apiB = connect(b.url, { metadata: { authorization: `Bearer ${b.token}` } });
    conns.push(apiA, apiB);
    const vm = await apiA.client(InstanceService).createInstance({ name: 'tk-vm', flavor: 'tk', image: 'big' });
    // Kill the streaming controller once a checkpoint is in, well before the end.
    const killBy = Date.now() + 120_000;
    let progress = 0;
    while (Date.now() < killBy) {
      progress = (await apiB.client(InstanceService).getInstance({ id: vm.uuid })).progress;
      if (progress >= 10) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(progress).toBeGreaterThanOrEqual(10);
    expect(progress).toBeLessThan(100);
    // The node's owner on the hash ring streams it, whichever controller was asked: that one is killed.
    const holder = await holderOf(databaseUrl, vm.nodeUuid);
    expect(['ctl-a', 'ctl-b']).toContain(holder);
    const [victim, survivor] = holder === 'ctl-a' ? [a, b] : [b, a];
    process.kill(victim.pid, 'SIGKILL');
    await victim.stop({ keepDatabase: true });
    // The survivor carries on as b (the second case joins it), and nothing is left to stop as a.
    a = undefined;
    b = survivor;
    bId = holder === 'ctl-a' ? 'ctl-b' : 'ctl-a';
    const apiS = holder === 'ctl-a' ? apiB : apiA;

    // The peer takes it over and finishes it.
    const doneBy = Date.now() + 150_000;
    let current = await apiS.client(InstanceService).getInstance({ id: vm.uuid });
    while (current.state === 'BUILD' && Date.now() < doneBy) {
      await new Promise((r) => setTimeout(r, 250));
      current = await apiS.client(InstanceService).getInstance({ id: vm.uuid });
    }
    expect(current, `${survivor.logs().slice(-4000)}\n${log.join('\n')}`).toMatchObject({ state: 'ACTIVE', nodeProvisionState: 'active' });
    expect(await sha256OfFilePrefix(m.disk, IMAGE_BYTES)).toBe(imageSha);
    // It continued from a checkpoint, not from zero: at most one commit interval was sent again.
    const diag = await runBmctl(['node', 'diagnose', 'tk-1'], { BM_URL: survivor.url, BM_TOKEN: survivor.token });
    const resumed = (JSON.parse(diag.stdout) as { recentEvents: { type: string; details: Record<string, string> }[] }).recentEvents.find(
      (e) => e.type === 'deploy.resumed',
    );
    expect(resumed?.details.entry).toBe('stream');
    expect(Number(resumed?.details.from)).toBeGreaterThan(0);
    expect(survivor.logs()).toMatch(/took over a deploy left by a stopped controller/);
  }, 420_000);

  it('fails no deploy when a controller is stopped gracefully (SIGTERM) mid-stream: a peer continues it at once', async () => {
    // The cluster of the first case: b alive; c joins and takes the next deploy.
    const env = { BM_SECRETS_KEY: '', BM_IMAGES_STORE_PATH: path.join(dir, 'images') };
    expect(b).toBeDefined();
    const shared = clusterOf.get('shared')!;
    const httpC = await freePort();
    const c = await startControllerProcess({
      databaseUrl: shared.databaseUrl,
      env: { ...env, BM_SECRETS_KEY: shared.key },
      natsPrefix: shared.natsPrefix,
      logLevel: 'warn',
      extraToml: await toml('ctl-c', httpC, await freeUdpPort()),
    });
    const cliC = { BM_URL: c.url, BM_TOKEN: c.token };
    const m2 = new VirtualNode({
      name: 'tk-2',
      mac: '52:54:00:0f:00:02',
      bmcPassword: 'takeover-secret',
      diskBytes: IMAGE_BYTES + 128 * MIB,
      dir: path.join(dir, 'm2'),
      bootUrl: `http://127.0.0.1:${httpC}`,
      say: (msg) => log.push(msg),
    });
    await m2.start();
    try {
      await createNodeWithBmctl(m2, cliC, {
        name: 'tk-2',
        cpus: 2,
        memoryMb: 2048,
        extra: ['--resource-class', 'tk2'],
        bmcPassword: 'takeover-secret',
      });
      for (const verb of ['manage', 'provide']) {
        const r = await runBmctl(['node', verb, 'tk-2', '--wait', '--timeout', '120'], cliC, 150_000);
        expect(r.code, `${r.stdout}${r.stderr}\n${log.join('\n')}`).toBe(0);
      }
      expect(
        (await runBmctl(['flavor', 'create', 'tk2', '--ram', '1024', '--disk', '1', '--cpus', '1', '--resource-class', 'tk2'], cliC)).code,
      ).toBe(0);
      const apiC = connect(c.url, { metadata: { authorization: `Bearer ${c.token}` } });
      const apiB = connect(b!.url, { metadata: { authorization: `Bearer ${b!.token}` } });
      conns.push(apiC, apiB);
      const vm = await apiC.client(InstanceService).createInstance({ name: 'tk-vm2', flavor: 'tk2', image: 'big' });
      const stopBy = Date.now() + 120_000;
      let progress = 0;
      while (Date.now() < stopBy && progress < 10) {
        progress = (await apiB.client(InstanceService).getInstance({ id: vm.uuid })).progress;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(progress).toBeLessThan(100);
      // A rolling restart of the controller streaming it (the node's owner): SIGTERM, and it exits after handing its nodes over.
      const holder = await holderOf(shared.databaseUrl, vm.nodeUuid);
      expect([bId, 'ctl-c']).toContain(holder);
      const stopping = holder === 'ctl-c' ? c : b!;
      const survivor = holder === 'ctl-c' ? b! : c;
      const apiS = holder === 'ctl-c' ? apiB : apiC;
      await stopping.stop({ keepDatabase: true });
      if (stopping === b) b = c;
      let current = await apiS.client(InstanceService).getInstance({ id: vm.uuid });
      const doneBy = Date.now() + 150_000;
      while (current.state === 'BUILD' && Date.now() < doneBy) {
        await new Promise((r) => setTimeout(r, 250));
        current = await apiS.client(InstanceService).getInstance({ id: vm.uuid });
      }
      expect(current, `${survivor.logs().slice(-4000)}\n${log.join('\n')}`).toMatchObject({
        state: 'ACTIVE',
        nodeProvisionState: 'active',
      });
      expect(await sha256OfFilePrefix(m2.disk, IMAGE_BYTES)).toBe(imageShaOf.get('big'));
    } finally {
      await m2.stop().catch(() => undefined);
      if (b !== c) await c.stop({ keepDatabase: true }).catch(() => undefined);
    }
  }, 420_000);
});
