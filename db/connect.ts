/**
 * Opens the shared MySQL/MariaDB database through mysql2 and drizzle-orm.
 */
import mysql from 'mysql2/promise';
import { drizzle, type MySql2Database } from 'drizzle-orm/mysql2';
import * as schema from './schema.ts';

export type Database = MySql2Database<typeof schema>;

export interface DbHandle {
  readonly db: Database;
  readonly pool: mysql.Pool;
  readonly databaseName: string;
  close(): Promise<void>;
}

export class DatabaseUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseUrlError';
  }
}

export interface ParsedDatabaseUrl {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
}

/** mysql://user:pass@host:port/db; the password never appears in the errors. */
export function parseDatabaseUrl(url: string): ParsedDatabaseUrl {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DatabaseUrlError('database url is not a URL (expected mysql://user@host:port/name)');
  }
  if (parsed.protocol !== 'mysql:') throw new DatabaseUrlError(`database url scheme must be mysql:, got ${parsed.protocol}`);
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  if (!/^[A-Za-z0-9_]{1,64}$/.test(database))
    throw new DatabaseUrlError(`database name must be 1-64 letters, digits or _, got "${database}"`);
  return {
    host: parsed.hostname || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 3306,
    user: decodeURIComponent(parsed.username || 'root'),
    password: decodeURIComponent(parsed.password),
    database,
  };
}

export function redactDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable url)';
  }
}

export async function openDatabase(url: string, options: { connectionLimit?: number } = {}): Promise<DbHandle> {
  const p = parseDatabaseUrl(url);
  const pool = mysql.createPool({
    host: p.host,
    port: p.port,
    user: p.user,
    password: p.password,
    database: p.database,
    connectionLimit: options.connectionLimit ?? 16,
    // DATETIME columns hold UTC: every controller must read the same instant.
    timezone: 'Z',
    supportBigNumbers: true,
    enableKeepAlive: true,
  });
  const db = drizzle(pool, { schema, mode: 'default' });
  return {
    db,
    pool,
    databaseName: p.database,
    close: () => pool.end(),
  };
}
