import { afterAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import { parseDatabaseUrl } from '../../db/connect.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { runBmctl, uniqueDatabaseUrl } from '../../controller/lab/index.ts';

const url = uniqueDatabaseUrl('bm_sync');
afterAll(async () => {
  await dropDatabase(url);
});

describe('bmctl db sync', () => {
  it('creates a missing database, applies the migrations, and is idempotent', async () => {
    const first = await runBmctl(['--json', 'db', 'sync'], { BM_DATABASE_URL: url });
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ created: true });
    expect((JSON.parse(first.stdout) as { applied: number }).applied).toBeGreaterThan(0);
    const second = await syncDatabase(url);
    expect(second).toMatchObject({ created: false, applied: 0 });
    const p = parseDatabaseUrl(url);
    const conn = await mysql.createConnection({ host: p.host, port: p.port, user: p.user, database: p.database });
    const [tables] = await conn.query<mysql.RowDataPacket[]>('SHOW TABLES');
    await conn.end();
    expect(tables.map((t) => Object.values(t)[0])).toEqual(expect.arrayContaining(['nodes', 'ports', 'controllers']));
  });

  it('is safe when several controllers sync at once', async () => {
    const results = await Promise.all([syncDatabase(url), syncDatabase(url), syncDatabase(url)]);
    expect(results.every((r) => r.applied === 0)).toBe(true);
  });

  it('explains a bad database URL in one line without the password', async () => {
    const r = await runBmctl(['db', 'sync'], { BM_DATABASE_URL: 'mysql://root:hunter2@127.0.0.1:3306/bad-name!' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/database name must be/);
    expect(r.stderr).not.toContain('hunter2');
  });
});
