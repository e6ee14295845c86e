/**
 * The API's TLS identity: the certificate and key named in [api], checked at
 * start and re-read every `tls_reload_ms` so a renewed pair is served without
 * a restart. A renewal is published only once the new pair is complete and
 * matches (a certificate written before its key keeps the old pair serving),
 * which grpc-js's own FileWatcherCertificateProvider does not do: it hands
 * over whatever it read and the listener drops connections until it fixes.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash, X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { AgentCa } from '../boot/index.ts';
import { BmError } from '../errors.ts';

type IdentityUpdate = grpc.experimental.IdentityCertificateUpdate;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;
type CaListener = grpc.experimental.CaCertificateUpdateListener;

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message.replace(/^error:[0-9A-F]+:/, '') : String(err);
}

/** Throws a message naming what is wrong with the pair; never echoes key bytes. */
function checkPair(cert: Buffer, key: Buffer, files: TlsFiles): void {
  try {
    new X509Certificate(cert);
  } catch (err) {
    throw new BmError('invalid-argument', `api.tls_cert: ${files.certFile} holds no PEM certificate (${describe(err)})`, {
      file: files.certFile,
    });
  }
  try {
    // Loads key and certificate together: a key that does not match the certificate fails here.
    createSecureContext({ cert, key });
  } catch (err) {
    throw new BmError('invalid-argument', `api.tls_key: ${files.keyFile} is not the private key of ${files.certFile} (${describe(err)})`, {
      file: files.keyFile,
    });
  }
}

function readOrThrow(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new BmError('invalid-argument', `${key}: cannot read ${path} (${describe(err)})`, { file: path });
  }
}

/** Reads and checks the pair once, at start: a bad configuration stops the controller with the key named. */
export function loadTlsIdentity(files: TlsFiles): IdentityUpdate {
  const certificate = readOrThrow(files.certFile, 'api.tls_cert');
  const privateKey = readOrThrow(files.keyFile, 'api.tls_key');
  checkPair(certificate, privateKey, files);
  return { certificate, privateKey };
}

/** The CA agents are told to trust, with the fingerprint their kernel command line carries. */
export function loadAgentCa(file: string, key: string): AgentCa {
  const pem = readOrThrow(file, key);
  try {
    new X509Certificate(pem);
  } catch (err) {
    throw new BmError('invalid-argument', `${key}: ${file} holds no PEM certificate (${describe(err)})`, { file });
  }
  return { pem, sha256: createHash('sha256').update(pem).digest('hex') };
}

/**
 * A grpc-js certificate provider (identity only: clients are not asked for
 * certificates; agents prove themselves by token, bmctl users by bearer token).
 */
export class ReloadingTlsIdentity implements grpc.experimental.CertificateProvider {
  private current: IdentityUpdate;
  private readonly listeners = new Set<IdentityListener>();
  private timer: NodeJS.Timeout | null = null;
  /** The rejected bytes last warned about, so a half-renewed pair is logged once, not every interval. */
  private lastRejected = '';
  private reading: Promise<void> | null = null;

  private readonly files: TlsFiles;
  private readonly intervalMs: number;
  private readonly log: Logger;

  constructor(files: TlsFiles, intervalMs: number, log: Logger) {
    this.files = files;
    this.intervalMs = intervalMs;
    this.log = log;
    this.current = loadTlsIdentity(files);
  }

  /** Re-reads the files now; resolves once a changed, valid pair is published (or refused). */
  reload(): Promise<void> {
    this.reading ??= this.readOnce().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  private async readOnce(): Promise<void> {
    let certificate: Buffer;
    let privateKey: Buffer;
    try {
      [certificate, privateKey] = await Promise.all([readFile(this.files.certFile), readFile(this.files.keyFile)]);
    } catch (err) {
      this.warnOnce(`unreadable:${describe(err)}`, describe(err));
      return;
    }
    if (certificate.equals(this.current.certificate) && privateKey.equals(this.current.privateKey)) return;
    try {
      checkPair(certificate, privateKey, this.files);
    } catch (err) {
      this.warnOnce(createHash('sha256').update(certificate).update(privateKey).digest('hex'), describe(err));
      return;
    }
    this.current = { certificate, privateKey };
    this.lastRejected = '';
    const cert = new X509Certificate(certificate);
    this.log.info({ file: this.files.certFile, validTo: cert.validTo, serial: cert.serialNumber }, 'API TLS certificate reloaded');
    for (const listener of this.listeners) listener(this.current);
  }

  private warnOnce(signature: string, reason: string): void {
    if (signature === this.lastRejected) return;
    this.lastRejected = signature;
    this.log.warn(
      { file: this.files.certFile, reason },
      'API TLS certificate files changed but are not a usable pair yet; still serving the previous certificate',
    );
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.listeners.add(listener);
    // grpc-js registers its own watcher only after this returns, so the first update must come later.
    queueMicrotask(() => {
      if (this.listeners.has(listener)) listener(this.current);
    });
    if (!this.timer) {
      this.timer = setInterval(() => void this.reload(), this.intervalMs);
      this.timer.unref();
    }
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.listeners.delete(listener);
    if (this.listeners.size === 0) this.stop();
  }

  addCaCertificateListener(_listener: CaListener): void {}
  removeCaCertificateListener(_listener: CaListener): void {}

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** TLS-only server credentials that follow this identity. */
  serverCredentials(): grpc.ServerCredentials {
    // grpc-js 1.14 names the first parameter caCertificateProvider, but passes it on as the identity
    // provider (its constructor takes identity first); the second, the CA for client certificates, is null.
    return grpc.experimental.createCertificateProviderServerCredentials(this, null, false);
  }
}
