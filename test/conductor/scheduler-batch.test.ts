/**
 * Group-committed claims on a real database: claims that queue behind a
 * batch are claimed together (their bindings written by one call), each node
 * at most once, and the claims left without a node get the "no valid node"
 * message with the per-filter counts. Two schedulers with their own pools
 * (two controllers) never both get one node, and one claim whose binding
 * fails does not take its batch down with it.
 */
import { randomBytes } from 'node:crypto';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { uniqueDatabaseUrl } from '../../controller/lab/index.ts';
import type { FlavorRecord } from '../../controller/flavors/index.ts';
import { uuidv7 } from '../../controller/nodes/index.ts';
import { type ClaimWriter, NoValidNodeError, Scheduler, type Transaction } from '../../controller/scheduler/index.ts';

const url = uniqueDatabaseUrl('bm_test_schedbatch');
let handles: DbHandle[];

const FLAVOR: FlavorRecord = { uuid: uuidv7(), name: 'small', ramMb: 4096, diskGb: 10, cpus: 2, extraSpecs: {}, createdAt: new Date() };

/** `fit` free nodes the flavor fits and `small` free ones with too little RAM. */
async function enroll(fit: number, small: number): Promise<void> {
  const rows = Array.from({ length: fit + small }, (_, i) => [
    uuidv7(),
    `batch-${i}`,
    'default',
    4,
    i < fit ? 8192 + (i % 2) * 8192 : 1024,
    100,
    'x86_64',
    `fake-${i}`,
    623,
    'admin',
    randomBytes(45),
    'fake',
    '{}',
    'available',
  ]);
  await handles[0]!.pool.query(
    'INSERT INTO nodes (uuid, name, group_name, cpus, memory_mb, local_gb, cpu_arch, pm_address, pm_port, pm_user, pm_password_enc, power_driver, properties, provision_state) VALUES ?',
    [rows],
  );
}

/** Records each call's items: how the claims were grouped into transactions. */
function recordingWriter(fail?: (item: string) => boolean): ClaimWriter<string> & { readonly calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    async write(_tx: Transaction, items: readonly string[]) {
      if (fail && items.some(fail)) throw new Error('the binding refused this instance');
      calls.push([...items]);
    },
  };
}

async function claimedNodes(): Promise<{ uuid: string; instance: string; reservation: string }[]> {
  const [rows] = await handles[0]!.pool.query<RowDataPacket[]>(
    "SELECT uuid, instance_uuid AS instance, reservation FROM nodes WHERE instance_uuid IS NOT NULL AND provision_state = 'deploying'",
  );
  return rows as { uuid: string; instance: string; reservation: string }[];
}

beforeAll(async () => {
  await syncDatabase(url);
  handles = [await openDatabase(url, { connectionLimit: 4 }), await openDatabase(url, { connectionLimit: 4 })];
});

afterEach(async () => {
  await handles[0]!.pool.query('DELETE FROM nodes');
});

afterAll(async () => {
  await Promise.all(handles.map((h) => h.close()));
  await dropDatabase(url);
});

describe('group-committed claims', () => {
  it('claims the queued claims in one batch, each node once, and refuses the rest with the per-filter counts', async () => {
    await enroll(6, 2);
    const scheduler = new Scheduler(handles[0]!.db);
    const writer = recordingWriter();
    const instances = Array.from({ length: 10 }, () => uuidv7());
    const results = await Promise.allSettled(
      instances.map((instance) => scheduler.claim(FLAVOR, instance, 'ctl-a', { writer, item: (node) => `${instance}@${node}` })),
    );

    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ instance: instances[i]!, node: r.value.node }] : []));
    expect(won).toHaveLength(6);
    expect(new Set(won.map((w) => w.node.uuid)).size).toBe(6);
    for (const w of won) {
      expect(w.node.instanceUuid).toBe(w.instance);
      expect(w.node.reservation).toBe('ctl-a');
      expect(w.node.provisionState).toBe('deploying');
    }
    // The first claim started a batch alone; the nine that queued behind it were written together.
    expect(writer.calls.map((c) => c.length)).toEqual([1, 5]);
    expect(writer.calls.flat().sort()).toEqual(won.map((w) => `${w.instance}@${w.node.uuid}`).sort());

    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(refused).toHaveLength(4);
    for (const r of refused) {
      expect(r.reason).toBeInstanceOf(NoValidNodeError);
      expect((r.reason as Error).message).toBe('no valid node: 2 available; 2 too little RAM');
    }
    // What the claims answered is what the database holds.
    const rows = await claimedNodes();
    expect(rows.map((r) => `${r.instance}@${r.uuid}`).sort()).toEqual(writer.calls.flat().sort());
  });

  it('gives each node to one of two schedulers with their own pools, never both', async () => {
    await enroll(50, 0);
    const schedulers = handles.map((h) => new Scheduler(h.db));
    const results = await Promise.allSettled(
      Array.from({ length: 80 }, (_, i) => schedulers[i % 2]!.claim(FLAVOR, uuidv7(), `ctl-${i % 2}`)),
    );
    const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.node] : []));
    expect(won).toHaveLength(50);
    expect(new Set(won.map((n) => n.uuid)).size).toBe(50);
    for (const r of results)
      if (r.status === 'rejected')
        expect((r.reason as Error).message).toMatch(/^no valid node: 0 available|^no valid node: \d+ available; /);
    const rows = await claimedNodes();
    expect(rows).toHaveLength(50);
    expect(new Set(rows.map((r) => r.instance)).size).toBe(50);
    expect(rows.map((r) => r.instance).sort()).toEqual(won.map((n) => n.instanceUuid).sort());
  });

  it('fails only the claim whose binding fails; its batch siblings keep their nodes', async () => {
    await enroll(8, 0);
    const scheduler = new Scheduler(handles[0]!.db);
    const instances = Array.from({ length: 6 }, () => uuidv7());
    const bad = instances[3]!;
    const writer = recordingWriter((item) => item.startsWith(bad));
    const results = await Promise.allSettled(
      instances.map((instance) => scheduler.claim(FLAVOR, instance, 'ctl-a', { writer, item: (node) => `${instance}@${node}` })),
    );
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(((results[3] as PromiseRejectedResult).reason as Error).message).toBe('the binding refused this instance');
    const rows = await claimedNodes();
    expect(rows.map((r) => r.instance).sort()).toEqual(instances.filter((i) => i !== bad).sort());
  });
});
