/**
 * What a user is told when the database fails: one line with the server's
 * reason and code, never drizzle's "Failed query: <sql> params: <values>"
 * (the values may hold a sealed password; the query text helps nobody
 * outside the controller log).
 */

interface DriverError {
  readonly code?: unknown;
  readonly errno?: unknown;
  readonly sqlMessage?: unknown;
  readonly message: string;
}

/** Connection-level failures: the database is down or unreachable, not refusing this request. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'PROTOCOL_CONNECTION_LOST',
  'ER_CON_COUNT_ERROR',
  'POOL_CLOSED',
]);

/** The mysql2 error inside whatever wraps it (drizzle puts it in `cause`). */
function driverError(err: unknown): DriverError | null {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as DriverError).code;
    if (
      typeof (e as DriverError).sqlMessage === 'string' ||
      (typeof code === 'string' && (code.startsWith('ER_') || UNREACHABLE.has(code) || code.startsWith('PROTOCOL_')))
    )
      return e as DriverError;
  }
  return null;
}

export function isDatabaseError(err: unknown): boolean {
  return driverError(err) !== null || (err instanceof Error && err.message.startsWith('Failed query:'));
}

export function isDatabaseUnreachable(err: unknown): boolean {
  const code = driverError(err)?.code;
  return typeof code === 'string' && UNREACHABLE.has(code);
}

/** One line: the server's own reason and its code, e.g. "Table 'bm.nodes' doesn't exist (ER_NO_SUCH_TABLE)". */
export function describeDatabaseError(err: unknown): string {
  const e = driverError(err);
  if (!e)
    return err instanceof Error && err.message.startsWith('Failed query:')
      ? 'the query failed'
      : firstLine(err instanceof Error ? err.message : String(err));
  const reason = typeof e.sqlMessage === 'string' ? e.sqlMessage : e.message;
  return `${firstLine(reason)}${typeof e.code === 'string' ? ` (${e.code})` : ''}`;
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0]!.trim();
}
