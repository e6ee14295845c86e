/**
 * The per-operation agent token. The conductor issues it when it boots the
 * node into the ramdisk (it rides on the kernel command line as `bm.token`);
 * every call the controller makes to this agent carries it as
 * `authorization: Bearer <token>`, so nobody else on the provisioning
 * network can write, read or erase the disk. Without a configured token the
 * agent refuses every call: it fails closed.
 *
 * Both sides are hashed before the comparison so that timingSafeEqual sees
 * equal lengths and the time taken says nothing about the token.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import type { ServerInterceptor } from '../proto/rpc/index.ts';
import { AgentAuthError } from './errors.ts';

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/** The bearer token of a call's metadata, if it has exactly one well-formed one. */
export function bearerToken(metadata: Metadata): string | undefined {
  const values = metadata.get('authorization');
  if (values.length !== 1) return undefined;
  const value = values[0];
  if (typeof value !== 'string') return undefined;
  const match = /^Bearer ([\x21-\x7e]+)$/i.exec(value);
  return match?.[1];
}

export function tokenMatches(expected: string | undefined, presented: string | undefined): boolean {
  if (!expected || !presented) return false;
  return timingSafeEqual(digest(expected), digest(presented));
}

/** Rejects every call that does not carry the agent token (UNAUTHENTICATED). */
export function agentTokenInterceptor(expected: string | undefined): ServerInterceptor {
  const expectedDigest = expected ? digest(expected) : undefined;
  return (ctx) => {
    const presented = bearerToken(ctx.metadata);
    if (!expectedDigest || presented === undefined || !timingSafeEqual(expectedDigest, digest(presented))) throw new AgentAuthError();
  };
}
