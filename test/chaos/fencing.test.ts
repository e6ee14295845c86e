/**
 * No split brain. Two controllers on one database; the one deploying a node
 * is (1) frozen with SIGSTOP past dead_after while its peer takes the deploy
 * over, then resumed: its late writes are refused by the owner epoch and the
 * node ends as the peer left it; (2) cut off from the database by a proxy
 * that holds its bytes: it fences itself before the peer may take over, sends
 * no write while fenced, and keeps no reservation once the peer took the
 * node; after the cut heals it touches nothing the peer owns.
 */
import { status } from '@grpc/grpc-js';
import mysql from 'mysql2/promise';
import { afterEach, describe, expect, it } from 'vitest';
import { uniqueDatabaseUrl, type ControllerProcess } from '../../controller/lab/index.ts';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { CutProxy } from '../support/cut-proxy.ts';
import { ChaosCluster } from './cluster-fixture.ts';

const DEAD_AFTER_S = 3;
let cluster: ChaosCluster | undefined;
let proxy: CutProxy | undefined;

afterEach(async () => {
  const c = cluster?.controllers.get('ctl-a');
  if (c) process.kill(c.pid, 'SIGCONT');
  proxy?.heal();
  await cluster?.close();
  await proxy?.close();
  cluster = undefined;
  proxy = undefined;
}, 120_000);

interface LogLine {
  readonly time: number;
  readonly msg: string;
}

function logLines(c: ControllerProcess): LogLine[] {
  return c
    .logs()
    .split('\n')
    .flatMap((line) => {
      try {
        const parsed = JSON.parse(line) as LogLine;
        return typeof parsed.time === 'number' ? [parsed] : [];
      } catch {
        return [];
      }
    });
}

const firstAt = (c: ControllerProcess, pattern: RegExp, after = 0): number | undefined =>
  logLines(c).find((l) => l.time >= after && pattern.test(l.msg))?.time;

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  timeoutMs: number,
  why: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await probe().catch(() => undefined);
    if (v) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not happen within ${timeoutMs / 1000} s\n${why()}`);
}

interface NodeRow {
  readonly uuid: string;
  readonly provision_state: string;
  readonly reservation: string | null;
  readonly owner_epoch: number;
  readonly version: number;
  readonly last_error: string | null;
}

async function nodeRow(url: string): Promise<NodeRow> {
  const conn = await mysql.createConnection(url);
  try {
    const [rows] = await conn.query<(NodeRow & mysql.RowDataPacket)[]>(
      'SELECT uuid, provision_state, reservation, owner_epoch, version, last_error FROM nodes',
    );
    return rows[0]!;
  } finally {
    await conn.end();
  }
}

/**
 * The node right after the peer's takeover: reserved by the peer, or already released by it. The agent may
 * hold nearly all of the image by then (it keeps what the old owner streamed), so on a loaded host the
 * peer's resume can finish before this read; then the node must be active.
 */
async function takenOver(url: string, c: ChaosCluster): Promise<NodeRow> {
  const taken = await nodeRow(url);
  expect(['ctl-b', null], c.logs()).toContain(taken.reservation);
  if (taken.reservation === null) expect(taken.provision_state, c.logs()).toBe('active');
  return taken;
}

const CHECKPOINT = /^update `nodes` set `deploy_committed_offset`/;

/**
 * Boots one instance through ctl-a (so ctl-a claims and deploys it) and cuts ctl-a's database link at its
 * first checkpoint write, holding that write: the stream is then under way, whatever the machine's speed.
 */
async function deployOnAUntilCheckpoint(c: ChaosCluster, cut: CutProxy): Promise<string> {
  cut.cutOn(CHECKPOINT);
  const [vm] = await c.boot('ctl-a', 1);
  await until(
    'a checkpoint write',
    async () => cut.isCut,
    180_000,
    () => c.logs(),
  );
  return vm!.uuid;
}

describe('fencing', () => {
  it('refuses the late write of an owner frozen past dead_after while a peer took its deploy over; the node ends as the peer left it', async () => {
    // The owner's link to the database goes through a proxy only to hold one checkpoint write in flight
    // across the freeze, so that it lands after the takeover, as a slow network would deliver it.
    const direct = uniqueDatabaseUrl('bm_fence_stop');
    proxy = await CutProxy.start(Number(new URL(direct).port || 3306));
    const proxied = new URL(direct);
    proxied.port = String(proxy.port);
    cluster = await ChaosCluster.start({
      name: 'fstop',
      databaseUrl: (id) => (id === 'ctl-a' ? proxied.toString() : direct),
      // ctl-b joins once ctl-a deploys: alone, ctl-a owns the node on the ring, so it claims and streams.
      controllers: ['ctl-a'],
      nodes: 1,
      imageMiB: 384,
      deadAfterS: DEAD_AFTER_S,
      macTag: 'f1',
    });
    await cluster.prepare('ctl-a');
    const a = cluster.controllers.get('ctl-a')!;
    // Freeze the owner the moment it sends its first checkpoint (held by the proxy, unanswered).
    const vm = await deployOnAUntilCheckpoint(cluster, proxy);
    process.kill(a.pid, 'SIGSTOP');
    const stoppedAt = Date.now();
    // Read before ctl-b joins: it may take the deploy over and finish it while it starts.
    const before = await nodeRow(direct);
    expect(before).toMatchObject({ provision_state: 'deploying', reservation: 'ctl-a' });
    const late = proxy.statements.filter((s) => CHECKPOINT.test(s.sql)).at(-1)!;
    expect(late.sql).toContain(`\`nodes\`.\`owner_epoch\` = ${before.owner_epoch}`);
    const b = await cluster.startController('ctl-b');
    const viaB = cluster.api('ctl-b');
    // The peer breaks the reservation once the heartbeat is dead_after old, and streams on.
    const takenAt = await until(
      'the takeover',
      async () => firstAt(b, /took over a deploy/, stoppedAt),
      60_000,
      () => cluster!.logs(),
    );
    expect(takenAt - stoppedAt).toBeGreaterThanOrEqual(DEAD_AFTER_S * 1000 - 500);
    console.info(`frozen owner: peer took over ${takenAt - stoppedAt} ms after SIGSTOP (dead_after ${DEAD_AFTER_S} s)`);
    const taken = await takenOver(direct, cluster);
    expect(taken.owner_epoch).toBeGreaterThanOrEqual(before.owner_epoch + 2);
    // The held write lands now, after the takeover; then the old owner wakes up in the middle of the peer's stream.
    proxy.heal();
    await new Promise((r) => setTimeout(r, 500));
    process.kill(a.pid, 'SIGCONT');
    const resumedAt = Date.now();

    const [done] = await cluster.waitSettled(viaB, [vm], 240_000);
    expect(done, cluster.logs()).toMatchObject({ state: 'ACTIVE', nodeProvisionState: 'active' });
    // Whatever the old owner still had in flight has landed (or been refused) by now.
    await new Promise((r) => setTimeout(r, 2 * DEAD_AFTER_S * 1000));
    const after = await nodeRow(direct);
    expect(after).toMatchObject({ provision_state: 'active', reservation: null, last_error: null });
    expect(after.owner_epoch).toBe(taken.owner_epoch);
    expect(await cluster.disksWithImage()).toBe(1);
    expect(await cluster.inconsistencies(direct)).toEqual([]);
    // Its checkpoint matched no row (the epoch had moved): the task ended there without failing the node.
    expect(a.logs(), a.logs()).toMatch(/task ended: the node was taken over meanwhile; not touching it/);
    expect(firstAt(a, /controller fenced/, resumedAt - 1000), a.logs()).toBeDefined();
    expect(a.logs()).not.toMatch(/"msg":"task failed"/);
    // It comes back: as a new member when the peer's heartbeat already removed its row, else by renewing it
    // (under load the peer may not have run that sweep yet when the old owner wakes up).
    expect(a.logs()).toMatch(/our controller row was gone \(peers found us dead\); joining again|controller unfenced: heartbeat renewed/);
  }, 600_000);

  it('a controller cut off from the database fences itself before its peer may take over, writes nothing while fenced, and keeps no reservation', async () => {
    const direct = uniqueDatabaseUrl('bm_fence_cut');
    proxy = await CutProxy.start(Number(new URL(direct).port || 3306));
    const proxied = new URL(direct);
    proxied.port = String(proxy.port);
    const viaProxy = proxied.toString();
    cluster = await ChaosCluster.start({
      name: 'fcut',
      databaseUrl: (id) => (id === 'ctl-a' ? viaProxy : direct),
      // ctl-b joins once ctl-a deploys: alone, ctl-a owns the node on the ring, so it claims and streams.
      controllers: ['ctl-a'],
      nodes: 1,
      imageMiB: 384,
      deadAfterS: DEAD_AFTER_S,
      macTag: 'f2',
    });
    await cluster.prepare('ctl-a');
    const a = cluster.controllers.get('ctl-a')!;
    // Cut off at its first checkpoint write (held with everything after it).
    const vm = await deployOnAUntilCheckpoint(cluster, proxy);
    const cutAt = proxy.statements.find((s) => CHECKPOINT.test(s.sql))!.at;
    const before = await nodeRow(direct);
    expect(before).toMatchObject({ provision_state: 'deploying', reservation: 'ctl-a' });
    const b = await cluster.startController('ctl-b');
    const viaB = cluster.api('ctl-b');
    const fencedAt = await until(
      'the fence',
      async () => firstAt(a, /controller fenced/, cutAt),
      30_000,
      () => cluster!.logs(),
    );
    const takenAt = await until(
      'the takeover',
      async () => firstAt(b, /took over a deploy/, cutAt),
      60_000,
      () => cluster!.logs(),
    );
    // Fenced at half of dead_after after its last renew (at most one interval before the cut), before the peer could take over.
    expect(fencedAt - cutAt).toBeLessThanOrEqual((DEAD_AFTER_S * 1000) / 2 + 1000);
    expect(fencedAt).toBeLessThan(takenAt);
    console.info(`cut off: fenced after ${fencedAt - cutAt} ms, peer took over after ${takenAt - cutAt} ms (dead_after ${DEAD_AFTER_S} s)`);
    const taken = await takenOver(direct, cluster);
    expect(taken.owner_epoch).toBeGreaterThanOrEqual(before.owner_epoch + 2);
    // Meanwhile its API refuses to act on nodes, at once and saying why.
    const viaA = cluster.api('ctl-a').client(NodeService);
    for (const call of [
      viaA.setPowerState({ id: before.uuid, target: 'off' }, { timeoutMs: 5000 }),
      viaA.provision({ id: before.uuid, verb: 'manage' }, { timeoutMs: 5000 }),
    ])
      await expect(call).rejects.toMatchObject({
        code: status.UNAVAILABLE,
        details: expect.stringMatching(/^controller fenced: cannot reach the database since \d{4}-/),
      });
    // Hold the cut a little longer, then let everything it sent arrive, late.
    await new Promise((r) => setTimeout(r, 2000));
    const healAt = Date.now();
    proxy.heal();

    const [done] = await cluster.waitSettled(viaB, [vm], 240_000);
    expect(done, cluster.logs()).toMatchObject({ state: 'ACTIVE', nodeProvisionState: 'active' });
    const unfencedAt = await until(
      'the unfence',
      async () => firstAt(a, /controller unfenced/, fencedAt),
      30_000,
      () => cluster!.logs(),
    );
    expect(unfencedAt).toBeGreaterThanOrEqual(healAt);
    await new Promise((r) => setTimeout(r, 2 * DEAD_AFTER_S * 1000));

    // Between the fence and the renew that lifted it, only heartbeat renews (of its own `controllers` row) left it.
    const whileFenced = proxy.statements.filter((s) => s.at >= fencedAt && s.at < unfencedAt);
    const writes = whileFenced.filter(
      (s) => /^\s*(insert|update|delete|replace)\b/i.test(s.sql) && !/^\s*\S+\s+(into\s+)?`controllers`/i.test(s.sql),
    );
    expect(writes).toEqual([]);
    console.info(`while fenced (${unfencedAt - fencedAt} ms): ${whileFenced.length} statements sent, ${writes.length} writes`);
    // Writes it sent after the cut but before its fence were held and landed after the peer took over: the epoch refused them.
    const held = proxy.statements.filter((s) => s.at >= cutAt && s.at < fencedAt && /^\s*update\s+`nodes`/i.test(s.sql));
    console.info(
      `held node writes delivered late: ${held.length}; ${held.filter((s) => /owner_epoch/.test(s.sql)).length} carried the old epoch; old owner said: ${
        a
          .logs()
          .match(/task stopped by the fence|taken over meanwhile/g)
          ?.join(', ') ?? 'nothing'
      }`,
    );
    expect(whileFenced.some((s) => /`controllers`/.test(s.sql))).toBe(true);
    const after = await nodeRow(direct);
    expect(after).toMatchObject({ provision_state: 'active', reservation: null, last_error: null });
    expect(after.owner_epoch).toBe(taken.owner_epoch);
    expect(await cluster.disksWithImage()).toBe(1);
    expect(await cluster.inconsistencies(direct)).toEqual([]);
    expect(a.logs()).not.toMatch(/"msg":"task failed"/);
  }, 600_000);
});
