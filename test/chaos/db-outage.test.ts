/**
 * The database goes away mid-run: a MariaDB of this test's own (own data
 * directory, own port; never the shared server) is frozen with SIGSTOP for
 * 10 s while two controllers run deploys on it, then thawed. Both controllers
 * fence themselves (their heartbeats cannot renew), back off, and recover
 * without restarting: every deploy ends ACTIVE with the image on its disk,
 * no node is left in a wrong or transient state, and no row is half-written.
 * Then the server is stopped and started again: the pools reconnect.
 */
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus } from '../../proto/gen/grpc/health/v1/health_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { ChaosCluster } from './cluster-fixture.ts';
import { startPrivateMariaDb, type PrivateMariaDb } from '../support/private-mariadb.ts';

const NODES = 3;
let mariadb: PrivateMariaDb | undefined;
let cluster: ChaosCluster | undefined;
const database = `bm_outage_${randomBytes(3).toString('hex')}`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  mariadb = await startPrivateMariaDb();
}, 90_000);

afterAll(async () => {
  mariadb?.thaw();
  await cluster?.close();
  await mariadb?.stop();
}, 120_000);

describe('database outage', () => {
  it('controllers fence, back off and recover when their database freezes for 10 s mid-run; every deploy ends ACTIVE, no row half-written', async () => {
    const db = mariadb!;
    cluster = await ChaosCluster.start({
      name: 'outage',
      databaseUrl: () => db.url(database),
      controllers: ['ctl-a', 'ctl-b'],
      nodes: NODES,
      imageMiB: 192,
      deadAfterS: 4,
      macTag: '0d',
    });
    await cluster.prepare('ctl-a');
    const pids = [...cluster.controllers.values()].map((c) => c.pid);
    const a = cluster.api('ctl-a');
    const b = cluster.api('ctl-b');

    const created = await cluster.boot('ctl-a', NODES);
    const uuids = created.map((i) => i.uuid);
    // Freeze once a deploy has committed a checkpoint and is still writing (read from the database itself,
    // often: a fast stream passes its few checkpoints quickly). The run is then in every stage.
    const watch = await mysql.createConnection(db.url(database));
    const streamingBy = Date.now() + 180_000;
    let streaming = 0;
    try {
      while (streaming === 0 && Date.now() < streamingBy) {
        const [rows] = await watch.query<mysql.RowDataPacket[]>(
          "SELECT COUNT(*) AS n FROM nodes WHERE provision_state = 'deploying' AND deploy_committed_offset > 0",
        );
        streaming = Number(rows[0]?.n ?? 0);
        if (streaming === 0) await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      await watch.end();
    }
    expect(streaming, cluster.logs()).toBeGreaterThan(0);
    const frozenAt = Date.now();
    db.freeze();
    await new Promise((r) => setTimeout(r, 10_000));
    db.thaw();
    const outageMs = Date.now() - frozenAt;

    const done = await cluster.waitSettled(b, uuids, 300_000);
    const why = `${cluster.logs()}`;
    expect(
      done.map((i) => [i.state, i.nodeProvisionState]),
      why,
    ).toEqual(uuids.map(() => ['ACTIVE', 'active']));
    expect(await cluster.disksWithImage()).toBe(NODES);
    expect(await cluster.inconsistencies(db.url(database)), why).toEqual([]);
    // The same processes, not restarted ones; each fenced itself and came back.
    for (const pid of pids) expect(alive(pid)).toBe(true);
    for (const c of cluster.controllers.values()) {
      expect(c.logs(), why).toMatch(/controller fenced: heartbeat not renewed in time/);
      expect(c.logs(), why).toMatch(/controller unfenced: heartbeat renewed/);
    }
    expect(outageMs).toBeGreaterThanOrEqual(10_000);
    // Every row was stale when the database came back, yet nobody was alive-but-judged-dead: each waited for its peers to renew.
    for (const c of cluster.controllers.values()) {
      expect(c.logs(), why).not.toMatch(/controller found dead/);
      expect(c.logs(), why).not.toMatch(/our controller row was gone/);
    }
    // A task in flight stopped at the fence and its node was resumed after it, not failed.
    const all = [...cluster.controllers.values()].map((c) => c.logs()).join('\n');
    expect(all, why).toMatch(/task stopped by the fence; the node keeps its state/);
    expect(all, why).toMatch(/took over a deploy left by a stopped controller/);

    // Stopped and started again (not frozen): every pooled connection is dead; the controllers reconnect.
    await db.restart();
    const servingBy = Date.now() + 60_000;
    let listed = false;
    while (!listed && Date.now() < servingBy) {
      listed = await Promise.all([a, b].map((c) => c.client(NodeService).listNodes({}, { timeoutMs: 3000 })))
        .then((pages) => pages.every((p) => p.nodes.length === NODES))
        .catch(() => false);
      if (!listed) await new Promise((r) => setTimeout(r, 500));
    }
    expect(listed, cluster.logs()).toBe(true);
    for (const c of [a, b]) expect((await c.client(Health).check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    for (const pid of pids) expect(alive(pid)).toBe(true);
  }, 600_000);
});
