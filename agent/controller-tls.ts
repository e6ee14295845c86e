/**
 * How the agent trusts its controller when the API speaks TLS. The iPXE
 * script put the sha256 of the controller's CA certificate on the kernel
 * command line (bm.ca=, with bm.ca_url= where the boot port serves it): the
 * agent fetches the certificate over plain HTTP (it is public), keeps it only
 * if its fingerprint matches, and then verifies the controller with it. The
 * fingerprint came with the script the controller served this boot, so a
 * stranger on the provisioning network can swap neither the CA nor the
 * controller.
 */
import { createHash } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { tlsCredentials } from '../proto/rpc/index.ts';
import { AgentError } from './errors.ts';

/** What the command line says about the controller's TLS. */
export type ControllerTls =
  | { readonly kind: 'plaintext' }
  /** https:// without bm.ca: the ramdisk's own trusted CAs. */
  | { readonly kind: 'system' }
  | { readonly kind: 'pinned'; readonly sha256: string; readonly url: string };

/** The CA the agent fetched does not have the fingerprint its command line names: never trust it. */
export class ControllerCaMismatchError extends AgentError {
  constructor(url: string, expected: string, actual: string) {
    super(
      'unauthenticated',
      `the CA certificate from ${url} has sha256 ${actual}, not ${expected} from bm.ca=: refusing to trust this controller`,
      { url, expected, actual },
    );
  }
}

export function controllerTls(params: { readonly controller?: string; readonly ca?: string; readonly caUrl?: string }): ControllerTls {
  if (params.ca !== undefined) {
    if (!/^[0-9a-fA-F]{64}$/.test(params.ca))
      throw new AgentError('invalid-argument', `bm.ca= must be the 64 hex digits of a sha256, not "${params.ca}"`);
    if (params.caUrl === undefined)
      throw new AgentError('invalid-argument', 'bm.ca= needs bm.ca_url= (where the boot server serves the CA certificate)');
    if (!/^https?:\/\//.test(params.caUrl))
      throw new AgentError('invalid-argument', `bm.ca_url= must be an http(s) URL, not "${params.caUrl}"`);
    return { kind: 'pinned', sha256: params.ca.toLowerCase(), url: params.caUrl };
  }
  return /^https:\/\//i.test(params.controller ?? '') ? { kind: 'system' } : { kind: 'plaintext' };
}

/**
 * Fetches the pinned CA and checks its fingerprint. Throws
 * ControllerCaMismatchError on a wrong certificate (not worth retrying), an
 * AgentError('io') when the boot server cannot be reached or answers badly.
 */
export async function fetchPinnedCa(
  tls: Extract<ControllerTls, { kind: 'pinned' }>,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Buffer> {
  let body: Buffer;
  try {
    const res = await fetch(tls.url, { signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]), redirect: 'error' });
    if (!res.ok)
      throw new AgentError('io', `fetching the controller's CA from ${tls.url}: HTTP ${res.status}`, { url: tls.url, status: res.status });
    body = Buffer.from(await res.arrayBuffer());
  } catch (error) {
    if (error instanceof AgentError) throw error;
    throw new AgentError(
      'io',
      `fetching the controller's CA from ${tls.url}: ${error instanceof Error ? error.message : String(error)}`,
      { url: tls.url },
      { cause: error },
    );
  }
  const actual = createHash('sha256').update(body).digest('hex');
  if (actual !== tls.sha256) throw new ControllerCaMismatchError(tls.url, tls.sha256, actual);
  return body;
}

export function credentialsFor(tls: ControllerTls, ca: Buffer | null): grpc.ChannelCredentials | undefined {
  if (tls.kind === 'plaintext') return undefined;
  return tlsCredentials(ca ?? undefined);
}
