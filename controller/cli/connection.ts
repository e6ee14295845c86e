/** bmctl's one way to the controller: the gRPC API, never the database or NATS. */
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { connect, isServiceError, tlsCredentials, type RpcConnection } from '../../proto/rpc/index.ts';
import { CliUsageError } from './errors.ts';
import { apiTarget } from './options.ts';

export interface ApiOptions {
  readonly url?: string;
  readonly token?: string;
  readonly ca?: string;
}

/** How bmctl reaches the API: the gRPC target and whether (and against what) it verifies TLS. */
export interface ApiEndpoint {
  readonly target: string;
  /** null: plaintext; otherwise the CA file, or '' for the system's roots (https:// without --ca). */
  readonly ca: string | null;
}

/** `https://host:port` or a CA means TLS; `http://`, `grpc://` or a bare host:port without a CA mean plaintext. */
export function apiEndpoint(url: string, ca: string | undefined): ApiEndpoint {
  const tls = /^https:\/\//i.test(url) || ca !== undefined;
  const target = url.replace(/^(grpc|https?):\/\//i, '').replace(/\/+$/, '');
  return { target, ca: tls ? (ca ?? '') : null };
}

function credentialsFor(endpoint: ApiEndpoint): grpc.ChannelCredentials {
  if (endpoint.ca === null) return grpc.credentials.createInsecure();
  if (endpoint.ca === '') return tlsCredentials();
  let pem: Buffer;
  try {
    pem = readFileSync(endpoint.ca);
  } catch (err) {
    throw new CliUsageError(`cannot read the CA file ${endpoint.ca} (--ca or BM_CA): ${err instanceof Error ? err.message : String(err)}`);
  }
  return tlsCredentials(pem);
}

export function apiConnection(opts: ApiOptions): RpcConnection {
  const { url, token, ca } = apiTarget(opts);
  return connect(apiEndpoint(url, ca).target, {
    credentials: credentialsFor(apiEndpoint(url, ca)),
    ...(token ? { metadata: { authorization: `Bearer ${token}` } } : {}),
  });
}

/** Whether something at host:port completes a TLS handshake (certificate unchecked: only "does it speak TLS"). */
export function speaksTls(target: string, timeoutMs = 2000): Promise<boolean> {
  const colon = target.lastIndexOf(':');
  const host = target.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(target.slice(colon + 1));
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host,
      port,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      ...(/^[\d.:]+$/.test(host) ? {} : { servername: host }),
    });
    const done = (result: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('secureConnect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Turns "unreachable" into what is really wrong when TLS is the cause: a TLS
 * server asked in plaintext, or a certificate the given CA did not sign.
 */
async function explainTlsFailure(err: unknown, endpoint: ApiEndpoint): Promise<unknown> {
  if (!isServiceError(err) || err.code !== grpc.status.UNAVAILABLE) return err;
  if (endpoint.ca === null) {
    if (await speaksTls(endpoint.target))
      return new CliUsageError(
        `the controller at ${endpoint.target} speaks TLS: pass --ca FILE (or set BM_CA) with the CA certificate that signed its certificate`,
      );
    return err;
  }
  if (/certificate|self.signed|verify|altname|SSL|TLS/i.test(err.details)) {
    const against = endpoint.ca === '' ? "the system's trusted CAs" : endpoint.ca;
    return new CliUsageError(
      `cannot verify the controller at ${endpoint.target} against ${against} (${err.details}): pass --ca FILE with the CA certificate that signed its certificate`,
    );
  }
  return err;
}

/** Opens the API connection, runs `fn` on it, and closes it however `fn` ends. */
export async function withApi<T>(opts: ApiOptions, fn: (conn: RpcConnection) => Promise<T>): Promise<T> {
  const conn = apiConnection(opts);
  try {
    return await fn(conn);
  } catch (err) {
    const { url, ca } = apiTarget(opts);
    throw await explainTlsFailure(err, apiEndpoint(url, ca));
  } finally {
    conn.close();
  }
}
