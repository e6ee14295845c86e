/** One clear line and a non-zero exit for every failure. */
import { status } from '@grpc/grpc-js';
import { isServiceError } from '../../proto/rpc/index.ts';
import { CAUSE_HEADER, describeDatabaseError, isDatabaseError } from '../api/index.ts';

export class CliUsageError extends Error {}

export function describeError(err: unknown, url?: string): string {
  if (isServiceError(err)) {
    const name = status[err.code] ?? String(err.code);
    // The controller answered; its database (or a node's owner, or a BMC) did not. Not "cannot reach the controller".
    if (err.metadata?.get(CAUSE_HEADER)[0] !== undefined) return `${err.details} (${name})`;
    if (err.code === status.UNAVAILABLE)
      return `cannot reach the controller at ${url ?? 'the API'} (${err.details}); is it running? (UNAVAILABLE)`;
    if (err.code === status.UNAUTHENTICATED) return `${err.details}: pass --token or set BM_TOKEN (UNAUTHENTICATED)`;
    return `${err.details} (${name})`;
  }
  // db sync and controller start talk to the database themselves.
  if (isDatabaseError(err)) return `database error: ${describeDatabaseError(err)}`;
  return err instanceof Error ? err.message : String(err);
}
