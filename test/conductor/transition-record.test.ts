/**
 * A task's transition answers the record it wrote without reading it back
 * (NodeStore.transitionFrom on a real MariaDB): that record must be the row
 * as a read finds it, and a record that is no longer current, or an owner
 * that lost the node, must change nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { uniqueDatabaseUrl } from '../../controller/lab/index.ts';
import { MysqlNodeStore } from '../../controller/nodes/mysql-store.ts';

const url = uniqueDatabaseUrl('bm_transition_record');
let db: DbHandle;
const NODE = '01a20000-0000-7000-8000-0000000000f1';

beforeAll(async () => {
  await syncDatabase(url);
  db = await openDatabase(url, { connectionLimit: 2 });
  await db.pool.query(
    "INSERT INTO nodes (uuid, name, cpus, memory_mb, local_gb, cpu_arch, pm_address, pm_user, properties, provision_state) VALUES (?, 'tr-1', 1, 1024, 10, 'x86_64', '192.0.2.1', 'admin', '{\"k\":\"v\"}', 'deploying')",
    [NODE],
  );
  await db.pool.query("INSERT INTO ports (uuid, node_uuid, address) VALUES (UUID(), ?, '52:54:00:0f:00:02')", [NODE]);
});

afterAll(async () => {
  await db?.close();
  await dropDatabase(url);
});

describe('transitionFrom', () => {
  it('answers exactly the row a read finds afterwards, and refuses a stale record or a lost owner', async () => {
    const store = new MysqlNodeStore(db.db);
    const epoch = await store.reserve(NODE, 'ctl-t');
    const owner = { controllerId: 'ctl-t', epoch: epoch! };
    const before = await store.findNode(NODE);
    expect(before?.macs).toEqual(['52:54:00:0f:00:02']);

    const moved = await store.transitionFrom(
      before!,
      'wait-callback',
      { powerState: 'on', lastError: null, targetPowerState: null },
      owner,
    );
    expect(moved).toMatchObject({ provisionState: 'wait-callback', powerState: 'on', lastError: null, version: before!.version + 1 });
    expect(moved).not.toHaveProperty('targetPowerState');
    expect(await store.findNode(NODE)).toEqual(moved);

    // A second writer of the same (now stale) record, and a writer that lost the node, change nothing.
    expect(await store.transitionFrom(before!, 'deploy-failed', { lastError: 'late' }, owner)).toBeNull();
    expect(await store.transitionFrom(moved!, 'deploying', {}, { controllerId: 'ctl-t', epoch: owner.epoch + 1 })).toBeNull();
    const again = await store.transitionFrom(moved!, 'deploying', { maintenance: false }, owner);
    expect(await store.findNode(NODE)).toEqual(again);
    expect(again?.provisionState).toBe('deploying');
  });
});
