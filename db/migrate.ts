/**
 * `bmctl db sync`: creates the database when missing and applies the committed
 * drizzle-kit migrations. Idempotent, and safe when several controllers start
 * at once: a named MySQL lock serialises them.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import mysql from 'mysql2/promise';
import { drizzle } from 'drizzle-orm/mysql2';
import { migrate } from 'drizzle-orm/mysql2/migrator';
import { parseDatabaseUrl } from './connect.ts';

export const migrationsFolder = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

export interface SyncResult {
  readonly database: string;
  readonly created: boolean;
  readonly applied: number;
}

export async function syncDatabase(url: string): Promise<SyncResult> {
  const p = parseDatabaseUrl(url);
  const conn = await mysql.createConnection({
    host: p.host,
    port: p.port,
    user: p.user,
    password: p.password,
    timezone: 'Z',
    multipleStatements: false,
  });
  try {
    const [existing] = await conn.query<mysql.RowDataPacket[]>(
      'SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?',
      [p.database],
    );
    const created = existing.length === 0;
    await conn.query(`CREATE DATABASE IF NOT EXISTS \`${p.database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
    await conn.changeUser({ database: p.database });
    const [lock] = await conn.query<mysql.RowDataPacket[]>("SELECT GET_LOCK('bm_db_sync', 60) AS got");
    if (lock[0]?.got !== 1) throw new Error('db sync: another controller held the migration lock for 60 s');
    try {
      const before = await appliedCount(conn);
      await migrate(drizzle(conn), { migrationsFolder });
      const after = await appliedCount(conn);
      return { database: p.database, created, applied: after - before };
    } finally {
      await conn.query("SELECT RELEASE_LOCK('bm_db_sync')");
    }
  } finally {
    await conn.end();
  }
}

async function appliedCount(conn: mysql.Connection): Promise<number> {
  const [tables] = await conn.query<mysql.RowDataPacket[]>(
    "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '__drizzle_migrations'",
  );
  if (tables.length === 0) return 0;
  const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT COUNT(*) AS n FROM `__drizzle_migrations`');
  return Number(rows[0]?.n ?? 0);
}

/** Drops a database; only tests and the lab use it, for databases they made. */
export async function dropDatabase(url: string): Promise<void> {
  const p = parseDatabaseUrl(url);
  const conn = await mysql.createConnection({ host: p.host, port: p.port, user: p.user, password: p.password });
  try {
    await conn.query(`DROP DATABASE IF EXISTS \`${p.database}\``);
  } finally {
    await conn.end();
  }
}
