/**
 * The one place controller errors become gRPC statuses. Typed errors carry a
 * message meant for operators; anything else is logged and answered with a
 * bare INTERNAL, since its message may hold internals.
 */
import { Metadata, status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { CallContext, StatusError } from '../../proto/rpc/index.ts';
import type { RefusalLog } from '../auth/index.ts';
import { BmError, type ErrorCode } from '../errors.ts';
import { describeDatabaseError, isDatabaseError, isDatabaseUnreachable } from './database-error.ts';

/** Trailer naming what failed behind the controller (database, owner, behind), for clients that word their message by it. */
export const CAUSE_HEADER = 'bm-cause';

const codes: Record<ErrorCode, status> = {
  'invalid-argument': status.INVALID_ARGUMENT,
  'not-found': status.NOT_FOUND,
  'already-exists': status.ALREADY_EXISTS,
  'failed-precondition': status.FAILED_PRECONDITION,
  conflict: status.ABORTED,
  unauthenticated: status.UNAUTHENTICATED,
  'permission-denied': status.PERMISSION_DENIED,
  unavailable: status.UNAVAILABLE,
  timeout: status.DEADLINE_EXCEEDED,
  unsupported: status.UNIMPLEMENTED,
  'resource-exhausted': status.RESOURCE_EXHAUSTED,
  internal: status.INTERNAL,
};

export function statusMapper(log: Logger, refusals: RefusalLog): (err: unknown, ctx: CallContext) => StatusError {
  return (err, ctx) => {
    if (err instanceof BmError) {
      if (err.code === 'internal') log.error({ err, method: ctx.path }, 'internal error');
      else if (err.code !== 'unauthenticated') log.debug({ code: err.code, method: ctx.path, context: err.context }, err.message);
      else refusals.refused(ctx.path, ctx.peer);
      if (err.code === 'unavailable') {
        // UNAVAILABLE alone reads as "this controller is down"; it answered: a peer (a node's owner) or a device did not.
        const metadata = new Metadata();
        metadata.set(CAUSE_HEADER, err.context.owner !== undefined ? 'owner' : 'behind');
        return { code: codes[err.code], details: err.message, metadata };
      }
      return { code: codes[err.code], details: err.code === 'internal' ? 'internal error' : err.message };
    }
    if (isDatabaseError(err)) {
      // The full error (query included) goes to the log; the caller gets the database's one-line reason.
      log.error({ err, method: ctx.path }, 'database error');
      const metadata = new Metadata();
      // Tells a client that the controller answered and its database did not (UNAVAILABLE alone reads as "controller down").
      metadata.set(CAUSE_HEADER, 'database');
      return {
        code: isDatabaseUnreachable(err) ? status.UNAVAILABLE : status.INTERNAL,
        details: `database error: ${describeDatabaseError(err)}`,
        metadata,
      };
    }
    log.error({ err, method: ctx.path }, 'unexpected error');
    return { code: status.INTERNAL, details: 'internal error' };
  };
}
