/** Deploy checkpoints in the node row, on a real MariaDB, seen by two "controllers". */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { MysqlDeployCheckpoints } from '../../controller/conductor/deploy-checkpoint.ts';
import { uniqueDatabaseUrl } from '../../controller/lab/index.ts';

const url = uniqueDatabaseUrl('bm_ckpt');
let a: DbHandle;
let b: DbHandle;
const NODE = '01a20000-0000-7000-8000-000000000001';
const IMAGE = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);

beforeAll(async () => {
  await syncDatabase(url);
  a = await openDatabase(url, { connectionLimit: 2 });
  b = await openDatabase(url, { connectionLimit: 2 });
  await a.pool.query(
    "INSERT INTO nodes (uuid, cpus, memory_mb, local_gb, cpu_arch, pm_address, pm_user, properties) VALUES (?, 1, 1024, 10, 'x86_64', '192.0.2.1', 'admin', '{}')",
    [NODE],
  );
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await dropDatabase(url);
});

describe('deploy checkpoints', () => {
  it('resume where the last committed offset stands, on whichever controller, for the same image only', async () => {
    const first = new MysqlDeployCheckpoints(a.db);
    const takeover = new MysqlDeployCheckpoints(b.db);
    expect(await first.begin(NODE, IMAGE)).toBe(0);
    await first.record(NODE, IMAGE, 64 << 20);
    await first.record(NODE, IMAGE, 128 << 20);
    // A late acknowledgement from a dead stream never moves the checkpoint back.
    await first.record(NODE, IMAGE, 32 << 20);
    expect(await takeover.begin(NODE, IMAGE)).toBe(128 << 20);
    // A write of another image starts at zero, and the old stream's records are ignored.
    expect(await takeover.begin(NODE, OTHER)).toBe(0);
    await first.record(NODE, IMAGE, 256 << 20);
    expect(await takeover.begin(NODE, OTHER)).toBe(0);
    await takeover.record(NODE, OTHER, 8 << 20);
    expect(await first.begin(NODE, OTHER)).toBe(8 << 20);
    await first.clear(NODE);
    expect(await takeover.begin(NODE, OTHER)).toBe(0);
  });
});
