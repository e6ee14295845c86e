/**
 * The one place agent errors become gRPC statuses. Agent errors carry no
 * secrets (see errors.ts), so their messages go to the caller; anything
 * else is logged here and reported as a bare INTERNAL.
 */
import { status } from '@grpc/grpc-js';
import type { CallContext, StatusError } from '../../proto/rpc/index.ts';
import { AgentError, type AgentErrorCode } from '../errors.ts';

const STATUS_FOR: Readonly<Record<AgentErrorCode, status>> = {
  'invalid-argument': status.INVALID_ARGUMENT,
  'not-found': status.NOT_FOUND,
  'failed-precondition': status.FAILED_PRECONDITION,
  'out-of-range': status.OUT_OF_RANGE,
  io: status.INTERNAL,
  unsupported: status.UNIMPLEMENTED,
  unauthenticated: status.UNAUTHENTICATED,
  busy: status.ABORTED,
  superseded: status.ABORTED,
  internal: status.INTERNAL,
};

export function agentStatusMapper(
  log: (message: string, fields?: Readonly<Record<string, unknown>>) => void,
): (err: unknown, ctx: CallContext) => StatusError {
  return (err, ctx) => {
    if (err instanceof AgentError) {
      // A superseded operation was already logged where the new one took over.
      if (err.code !== 'unauthenticated' && err.code !== 'superseded')
        log('call failed', { method: ctx.path, code: err.code, error: err.message });
      return { code: STATUS_FOR[err.code], details: err.message };
    }
    if (ctx.signal.aborted) return { code: status.CANCELLED, details: 'call cancelled' };
    if (err instanceof Error && err.name === 'AbortError') return { code: status.ABORTED, details: err.message };
    log('call failed with an unexpected error', { method: ctx.path, error: err instanceof Error ? err.message : String(err) });
    return { code: status.INTERNAL, details: 'internal error' };
  };
}
