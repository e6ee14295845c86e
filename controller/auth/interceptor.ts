/**
 * The one authentication check every API call passes through. A refused call
 * learns only that it is unauthenticated: not whether a token was missing,
 * malformed or wrong.
 *
 * It runs as a grpc-js server interceptor on the call's headers, before
 * grpc-js reads a byte of the request body: a stranger's request is never
 * buffered or parsed (the adapter's interceptors run only after the request
 * message was read and decoded).
 */
import * as grpc from '@grpc/grpc-js';
import type { CallContext, ServerInterceptor } from '../../proto/rpc/index.ts';
import { ADMIN_CALLER, setCaller } from './caller.ts';
import { BmError } from '../errors.ts';
import type { RefusalLog } from './refusal-log.ts';
import type { TokenSet } from './tokens.ts';

export class UnauthenticatedError extends BmError {
  constructor() {
    super('unauthenticated', 'a valid bearer token is required');
  }
}

/** Services reachable without an admin token (health checks; agents carry their own tokens). */
const PUBLIC_PREFIXES = ['/grpc.health.v1.Health/'];

export function bearerTokenOf(metadata: grpc.Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  if (typeof value !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(value);
  return m?.[1];
}

export function bearerToken(ctx: CallContext): string | undefined {
  return bearerTokenOf(ctx.metadata);
}

export function adminAuth(tokens: TokenSet, refusals: RefusalLog, extraPublic: readonly string[] = []): grpc.ServerInterceptor {
  const open = [...PUBLIC_PREFIXES, ...extraPublic];
  return (method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, forward) {
            const token = open.some((p) => method.path.startsWith(p)) ? null : bearerTokenOf(metadata);
            if (token === null || (token !== undefined && tokens.verify(token))) {
              forward(metadata);
              return;
            }
            refusals.refused(method.path, call.getPeer());
            // Not forwarding the headers keeps the handler from asking for the body: it stays unread.
            call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: new UnauthenticatedError().message, metadata: new grpc.Metadata() });
          },
        });
      },
    });
}

/**
 * Who the (already authenticated) caller is, for the handlers: runs in the
 * adapter, after adminAuth let the call's headers through. Every token of
 * bm.toml is an admin's.
 */
export function callerAuth(extraPublic: readonly string[] = []): ServerInterceptor {
  const open = [...PUBLIC_PREFIXES, ...extraPublic];
  return (ctx) => {
    if (open.some((p) => ctx.path.startsWith(p))) return;
    setCaller(ctx, ADMIN_CALLER);
  };
}
