/**
 * What every API call leaves behind when it ends: a Prometheus count and
 * latency by method and status, and for every mutation one structured audit
 * line at info: who (project, role, the token's id: the first 12 hex digits
 * of its sha256, never the token), what (method), on what (the id or name
 * the request names), the result and the duration. Reads are not audited;
 * agents' heartbeats and lookups neither (they are frequent and carry no
 * operator intent).
 */
import { createHash } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { CallContext } from '../../proto/rpc/index.ts';
import { callerIfAny, bearerToken } from '../auth/index.ts';

const READS = /^(Get|List|Watch|Check)/;
const QUIET = new Set(['/bm.v1.AgentRegistry/Heartbeat', '/bm.v1.AgentRegistry/Lookup']);

/** The id or name a request names, for the audit line: never any other field (a request may carry a password). */
function targetOf(request: unknown): string | undefined {
  if (typeof request !== 'object' || request === null) return undefined;
  for (const key of ['id', 'nodeUuid', 'name'] as const) {
    if (key in request) {
      const value = (request as Record<string, unknown>)[key];
      if (typeof value === 'string' && value !== '') return value.slice(0, 255);
    }
  }
  return undefined;
}

export function apiObserver(log: Logger, registry: Registry): (ctx: CallContext, code: status, ms: number, request: unknown) => void {
  const calls = new Counter({
    name: 'bm_api_calls_total',
    help: 'API calls by method and status',
    labelNames: ['method', 'code'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'bm_api_call_seconds',
    help: 'API call duration by method',
    labelNames: ['method'],
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60],
    registers: [registry],
  });
  return (ctx, code, ms, request) => {
    const method = ctx.path.slice(ctx.path.indexOf('.v1.') + 4) || ctx.path;
    calls.inc({ method, code: status[code] ?? String(code) });
    latency.observe({ method }, ms / 1000);
    const name = ctx.path.slice(ctx.path.lastIndexOf('/') + 1);
    if (READS.test(name) || QUIET.has(ctx.path) || ctx.path.startsWith('/grpc.health')) return;
    const caller = callerIfAny(ctx);
    const token = bearerToken(ctx);
    log.info(
      {
        audit: 'api',
        who: caller ? { project: caller.project, role: caller.role } : { agent: ctx.path.startsWith('/bm.v1.AgentRegistry/') },
        tokenId: token ? createHash('sha256').update(token, 'utf8').digest('hex').slice(0, 12) : undefined,
        peer: ctx.peer,
        method,
        target: targetOf(request),
        result: status[code] ?? String(code),
        ms: Math.round(ms),
      },
      'api call',
    );
  };
}
