/**
 * Membership on a real MariaDB: a member judges a stale peer dead only once
 * its own heartbeats have held for dead_after (right after a start or an
 * outage every row may be stale), and a member whose row peers removed joins
 * again at its next renew.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eq, sql } from 'drizzle-orm';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { controllers } from '../../db/schema.ts';
import { silentLogger } from '../../controller/boot/log-limiter.ts';
import { Fence } from '../../controller/cluster/fence.ts';
import { Membership } from '../../controller/cluster/membership.ts';
import { uniqueDatabaseUrl } from '../../controller/lab/index.ts';

const url = uniqueDatabaseUrl('bm_members');
let db: DbHandle;
const members: Membership[] = [];

beforeAll(async () => {
  await syncDatabase(url);
  db = await openDatabase(url, { connectionLimit: 4 });
});

afterAll(async () => {
  for (const m of members) await m.leave().catch(() => undefined);
  await db?.close();
  await dropDatabase(url);
});

const member = (id: string, fence: Fence | null = null): Membership => {
  const m = new Membership(
    db.db,
    { id, apiAddress: '127.0.0.1:1', groups: ['default'], intervalMs: 100, deadAfterMs: 1500 },
    silentLogger,
    null,
    fence,
  );
  members.push(m);
  return m;
};

const rowOf = async (id: string) => (await db.db.select().from(controllers).where(eq(controllers.id, id)))[0];

describe('membership', () => {
  it('judges a stale peer dead only after its own heartbeats held for dead_after, and a removed member joins again', async () => {
    const fence = new Fence({ controllerId: 'm-a', fenceAfterMs: 750 }, silentLogger);
    const a = member('m-a', fence);
    // A peer row 10 s stale, as every row is right after a database outage.
    await db.db.insert(controllers).values({
      id: 'm-stale',
      hostname: 'h',
      apiAddress: '127.0.0.1:2',
      groups: ['default'],
      startedAt: new Date(),
      heartbeatAt: sql`NOW(3) - INTERVAL 10 SECOND`,
    });
    await a.join();
    expect(a.settled).toBe(false);
    await new Promise((r) => setTimeout(r, 1000));
    // Renewing all along, but not yet for dead_after: the stale row stays.
    expect(await rowOf('m-stale')).toBeDefined();
    await new Promise((r) => setTimeout(r, 1000));
    expect(a.settled).toBe(true);
    expect(await rowOf('m-stale')).toBeUndefined();

    // Peers removed our row (we were frozen): the next renew puts it back, and the fence stays open.
    await db.db.delete(controllers).where(eq(controllers.id, 'm-a'));
    await new Promise((r) => setTimeout(r, 400));
    expect(await rowOf('m-a')).toBeDefined();
    expect(fence.fenced).toBe(false);
  }, 30_000);
});
