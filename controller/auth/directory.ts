/**
 * Who a bearer token belongs to. bm.toml's tokens are the fleet's admins;
 * project tokens live (as digests) in the api_tokens table, made through
 * TokenService. Lookups are cached briefly so the database sees one query
 * per token per interval, not one per call; a deleted token stops working
 * within that interval.
 */
import { createHash } from 'node:crypto';
import { asc, eq, like } from 'drizzle-orm';
import { type Database, apiTokens, type ApiTokenRow } from '../../db/index.ts';
import { BmError, NotFoundError, ValidationError } from '../errors.ts';
import { ADMIN_CALLER, type Caller, type Role } from './caller.ts';
import { newToken, type TokenSet } from './tokens.ts';

const CACHE_MS = 10_000;
const PROJECT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ROLES: readonly Role[] = ['admin', 'member'];

export interface TokenInfo {
  readonly id: string;
  readonly project: string;
  readonly role: Role;
  readonly description: string;
  readonly createdAt: Date;
}

function digestHex(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function toInfo(row: ApiTokenRow): TokenInfo {
  return {
    id: row.hash.slice(0, 12),
    project: row.project,
    role: row.role as Role,
    description: row.description,
    createdAt: row.createdAt,
  };
}

export class TokenDirectory {
  readonly #admins: TokenSet;
  readonly #db: Database;
  readonly #cache = new Map<string, { caller: Caller | null; until: number }>();

  constructor(admins: TokenSet, db: Database) {
    this.#admins = admins;
    this.#db = db;
  }

  /** The caller a token stands for, or null for no valid token. */
  async resolve(token: string): Promise<Caller | null> {
    if (this.#admins.verify(token)) return ADMIN_CALLER;
    // Tokens are 32 random bytes: anything far off that shape is refused without a query.
    if (token.length < 16 || token.length > 128) return null;
    const hash = digestHex(token);
    const now = Date.now();
    const hit = this.#cache.get(hash);
    if (hit && hit.until > now) return hit.caller;
    const [row] = await this.#db.select().from(apiTokens).where(eq(apiTokens.hash, hash)).limit(1);
    const caller: Caller | null = row ? { project: row.project, role: row.role as Role } : null;
    if (this.#cache.size > 10_000) this.#cache.clear();
    this.#cache.set(hash, { caller, until: now + CACHE_MS });
    return caller;
  }

  async create(project: string, role: string, description: string): Promise<{ token: string; info: TokenInfo }> {
    if (!PROJECT.test(project)) throw new ValidationError('project', '1-64 letters, digits, ".", "_" or "-"');
    if (!(ROLES as readonly string[]).includes(role)) throw new ValidationError('role', `must be one of ${ROLES.join(', ')}`);
    if (!/^[\x20-\x7e]{0,255}$/.test(description)) throw new ValidationError('description', 'at most 255 printable characters');
    const token = newToken();
    const row = { hash: digestHex(token), project, role, description, createdAt: new Date() };
    await this.#db.insert(apiTokens).values(row);
    return { token, info: toInfo(row) };
  }

  async list(): Promise<TokenInfo[]> {
    return (await this.#db.select().from(apiTokens).orderBy(asc(apiTokens.project), asc(apiTokens.createdAt))).map(toInfo);
  }

  async delete(id: string): Promise<void> {
    if (!/^[0-9a-f]{12}$/.test(id)) throw new ValidationError('id', 'the 12 hex digits `bmctl token list` shows');
    const rows = await this.#db
      .select({ hash: apiTokens.hash })
      .from(apiTokens)
      .where(like(apiTokens.hash, `${id}%`));
    if (rows.length === 0) throw new NotFoundError('token', id);
    if (rows.length > 1) throw new BmError('failed-precondition', `token id ${id} is ambiguous`);
    await this.#db.delete(apiTokens).where(eq(apiTokens.hash, rows[0]!.hash));
    this.#cache.clear();
  }
}
