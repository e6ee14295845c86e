/**
 * Who makes an API call: the project and role their token carries. The
 * authentication interceptor sets it on the call's context; handlers read it
 * to scope what they show and touch.
 */
import type { CallContext } from '../../proto/rpc/index.ts';
import { BmError } from '../errors.ts';

export type Role = 'admin' | 'member';

export interface Caller {
  readonly project: string;
  readonly role: Role;
}

/** Tokens from bm.toml's [api] tokens: the fleet's operators. */
export const ADMIN_CALLER: Caller = { project: 'admin', role: 'admin' };

const callers = new WeakMap<CallContext, Caller>();

export function setCaller(ctx: CallContext, caller: Caller): void {
  callers.set(ctx, caller);
}

/** The authenticated caller; calls the interceptor let through without one (health) have none. */
export function callerOf(ctx: CallContext): Caller {
  const caller = callers.get(ctx);
  if (!caller) throw new BmError('unauthenticated', 'a valid bearer token is required');
  return caller;
}

/** The caller when the call had one (audit lines), else null. */
export function callerIfAny(ctx: CallContext): Caller | null {
  return callers.get(ctx) ?? null;
}

export function requireAdmin(ctx: CallContext, what: string): Caller {
  const caller = callerOf(ctx);
  if (caller.role !== 'admin') throw new BmError('permission-denied', `${what} needs an admin token`, { project: caller.project });
  return caller;
}
