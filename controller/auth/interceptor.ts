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
import { setCaller } from './caller.ts';
import type { TokenDirectory } from './directory.ts';
import { BmError } from '../errors.ts';
import type { RefusalLog } from './refusal-log.ts';

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

export function adminAuth(tokens: TokenDirectory, refusals: RefusalLog, extraPublic: readonly string[] = []): grpc.ServerInterceptor {
  const open = [...PUBLIC_PREFIXES, ...extraPublic];
  return (method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, forward) {
            const token = open.some((p) => method.path.startsWith(p)) ? null : bearerTokenOf(metadata);
            const refuse = (): void => {
              refusals.refused(method.path, call.getPeer());
              // Not forwarding the headers keeps the handler from asking for the body: it stays unread.
              call.sendStatus({
                code: grpc.status.UNAUTHENTICATED,
                details: new UnauthenticatedError().message,
                metadata: new grpc.Metadata(),
              });
            };
            if (token === null) return forward(metadata);
            if (token === undefined) return refuse();
            tokens.resolve(token).then(
              (caller) => (caller ? forward(metadata) : refuse()),
              () =>
                call.sendStatus({
                  code: grpc.status.UNAVAILABLE,
                  details: 'cannot check the token now (database unavailable); retry',
                  metadata: new grpc.Metadata(),
                }),
            );
          },
        });
      },
    });
}

/**
 * What a member token may call: its project's instances, and reading the
 * flavors and images it boots. Everything else (nodes, ports, BMC details,
 * uploads, tokens, fleet events) is the fleet's, for admins.
 */
const MEMBER_METHODS: ReadonlySet<string> = new Set([
  '/bm.v1.InstanceService/CreateInstance',
  '/bm.v1.InstanceService/GetInstance',
  '/bm.v1.InstanceService/ListInstances',
  '/bm.v1.InstanceService/DeleteInstance',
  '/bm.v1.InstanceService/RebootInstance',
  '/bm.v1.InstanceService/SetInstancePower',
  '/bm.v1.FlavorService/GetFlavor',
  '/bm.v1.FlavorService/ListFlavors',
  '/bm.v1.ImageService/GetImage',
  '/bm.v1.ImageService/ListImages',
  // Scoped in the handler to the nodes of the member's own instances.
  '/bm.v1.EventService/Watch',
]);

/**
 * Who the (already authenticated) caller is, for the handlers, and the one
 * place roles are enforced: runs in the adapter, after adminAuth let the
 * call's headers through.
 */
export function callerAuth(tokens: TokenDirectory, extraPublic: readonly string[] = []): ServerInterceptor {
  const open = [...PUBLIC_PREFIXES, ...extraPublic];
  return async (ctx) => {
    if (open.some((p) => ctx.path.startsWith(p))) return;
    const token = bearerToken(ctx);
    const caller = token === undefined ? null : await tokens.resolve(token);
    if (!caller) throw new UnauthenticatedError();
    if (caller.role !== 'admin' && !MEMBER_METHODS.has(ctx.path)) {
      throw new BmError(
        'permission-denied',
        `${ctx.path.slice(ctx.path.lastIndexOf('/') + 1)} needs an admin token (this token is a member of project ${caller.project})`,
        { project: caller.project },
      );
    }
    setCaller(ctx, caller);
  };
}
