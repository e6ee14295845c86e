/**
 * The one place controller errors become gRPC statuses. Typed errors carry a
 * message meant for operators; anything else is logged and answered with a
 * bare INTERNAL, since its message may hold internals.
 */
import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { CallContext, StatusError } from '../../proto/rpc/index.ts';
import { BmError, type ErrorCode } from '../errors.ts';

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

export function statusMapper(log: Logger): (err: unknown, ctx: CallContext) => StatusError {
  return (err, ctx) => {
    if (err instanceof BmError) {
      if (err.code === 'internal') log.error({ err, method: ctx.path }, 'internal error');
      else if (err.code !== 'unauthenticated') log.debug({ code: err.code, method: ctx.path, context: err.context }, err.message);
      else log.info({ method: ctx.path, peer: ctx.peer }, 'refused unauthenticated call');
      return { code: codes[err.code], details: err.code === 'internal' ? 'internal error' : err.message };
    }
    log.error({ err, method: ctx.path }, 'unexpected error');
    return { code: status.INTERNAL, details: 'internal error' };
  };
}
