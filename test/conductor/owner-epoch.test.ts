/**
 * Owner epochs on a real MariaDB: the reservation hands back a fresh epoch in
 * its one UPDATE, breaking a dead holder's reservation moves it on, and every
 * guarded write of the old owner (transition, observation, checkpoint) is
 * refused once a peer took the node over.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { DeadReservations } from '../../controller/conductor/dead-reservations.ts';
import { MysqlDeployCheckpoints } from '../../controller/conductor/deploy-checkpoint.ts';
import { uniqueDatabaseUrl } from '../../controller/lab/index.ts';
import { MysqlNodeStore } from '../../controller/nodes/mysql-store.ts';
import { StaleOwnerError } from '../../controller/nodes/owner.ts';

const url = uniqueDatabaseUrl('bm_epoch');
let db: DbHandle;
const NODE = '01a20000-0000-7000-8000-0000000000e1';
const IMAGE = 'c'.repeat(64);

beforeAll(async () => {
  await syncDatabase(url);
  db = await openDatabase(url, { connectionLimit: 2 });
  await db.pool.query(
    "INSERT INTO nodes (uuid, cpus, memory_mb, local_gb, cpu_arch, pm_address, pm_user, properties, provision_state) VALUES (?, 1, 1024, 10, 'x86_64', '192.0.2.1', 'admin', '{}', 'deploying')",
    [NODE],
  );
});

afterAll(async () => {
  await db?.close();
  await dropDatabase(url);
});

describe('owner epoch', () => {
  it("refuses every write of an owner whose reservation was broken and taken by a peer, and leaves the peer's node as it was", async () => {
    const store = new MysqlNodeStore(db.db);
    const checkpoints = new MysqlDeployCheckpoints(db.db);
    const oldEpoch = await store.reserve(NODE, 'ctl-old');
    expect(oldEpoch).toBe(1);
    expect(await store.reserve(NODE, 'ctl-new')).toBeNull();
    const old = { controllerId: 'ctl-old', epoch: oldEpoch! };
    await checkpoints.begin(NODE, IMAGE);
    await checkpoints.record(NODE, IMAGE, 64 << 20, old);

    // ctl-old has no row in `controllers`: dead. The peer breaks (epoch 2) and reserves (epoch 3).
    expect(await new DeadReservations(db.db, 30_000, 'ctl-new').breakIfDead(NODE)).toBe(true);
    const newEpoch = await store.reserve(NODE, 'ctl-new');
    expect(newEpoch).toBe(3);
    const peer = { controllerId: 'ctl-new', epoch: newEpoch! };
    await checkpoints.record(NODE, IMAGE, 96 << 20, peer);
    const moved = await store.transition(NODE, 'deploying', 'wait-callback', { lastError: null }, null, peer);
    expect(moved?.provisionState).toBe('wait-callback');

    // The old owner wakes up.
    expect(await store.transition(NODE, 'wait-callback', 'deploying', {}, null, old)).toBeNull();
    await expect(store.recordState(NODE, { lastError: 'late' }, old)).rejects.toThrow(StaleOwnerError);
    await expect(checkpoints.record(NODE, IMAGE, 200 << 20, old)).rejects.toThrow(/taken over \(now held by ctl-new at owner epoch 3\)/);
    await store.release(NODE, 'ctl-old', old.epoch);

    const after = await store.findNode(NODE);
    expect(after).toMatchObject({ provisionState: 'wait-callback', reservation: 'ctl-new', ownerEpoch: 3, lastError: null });
    expect(after?.version).toBe(moved?.version);
    expect(await checkpoints.begin(NODE, IMAGE)).toBe(96 << 20);

    // The peer's own release at its epoch works.
    await store.release(NODE, 'ctl-new', peer.epoch);
    expect((await store.findNode(NODE))?.reservation).toBeNull();
  });
});
