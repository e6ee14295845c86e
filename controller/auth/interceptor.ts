/**
 * The one authentication check every API call passes through. A refused call
 * learns only that it is unauthenticated: not whether a token was missing,
 * malformed or wrong.
 */
import type { CallContext, ServerInterceptor } from '../../proto/rpc/index.ts';
import { BmError } from '../errors.ts';
import { ADMIN_CALLER, setCaller } from './caller.ts';
import type { TokenSet } from './tokens.ts';

export class UnauthenticatedError extends BmError {
  constructor() {
    super('unauthenticated', 'a valid bearer token is required');
  }
}

/** Services reachable without an admin token (health checks; agents carry their own tokens). */
const PUBLIC_PREFIXES = ['/grpc.health.v1.Health/'];

export function bearerToken(ctx: CallContext): string | undefined {
  const value = ctx.metadata.get('authorization')[0];
  if (typeof value !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(value);
  return m?.[1];
}

export function adminAuth(tokens: TokenSet, extraPublic: readonly string[] = []): ServerInterceptor {
  const open = [...PUBLIC_PREFIXES, ...extraPublic];
  return (ctx) => {
    if (open.some((p) => ctx.path.startsWith(p))) return;
    const token = bearerToken(ctx);
    if (token === undefined || !tokens.verify(token)) throw new UnauthenticatedError();
    setCaller(ctx, ADMIN_CALLER);
  };
}
