/**
 * The HTTP boot server (default port 6386): per-MAC iPXE scripts under
 * /boot/<mac>.ipxe and kernels/ramdisks under /images/<name>, streamed with
 * single-range support, /metrics when the controller hands it a registry, and
 * /ca.pem (the CA agents verify the API with) when the API serves TLS.
 * Paths outside the blob root are refused (403).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { BmError } from '../../errors.ts';
import { normalizeMac } from '../../nodes/index.ts';
import { AGENT_CA_PATH, planBoot, type BootPlanConfig, type BootStateSource } from '../boot-plan.ts';
import { NotBootBlobError, PathOutsideRootError } from '../errors.ts';
import { renderIpxeScript } from '../ipxe-script.ts';
import type { BlobSource } from './blob-source.ts';
import { clientIpv4, type BootClientGate } from './client-gate.ts';
import { answerMetadata, isMetadataPath, type MetadataSource } from './metadata.ts';
import { parseRange } from './range.ts';
import type { Logger } from 'pino';
import { errorText, LogLimiter, silentLogger } from '../log-limiter.ts';

export interface HttpBootOptions {
  readonly states: BootStateSource;
  readonly blobs: BlobSource;
  /** Who may fetch /images/ (kernels and ramdisks): no default, so the port is never public by omission. */
  readonly clients: BootClientGate;
  readonly plan: BootPlanConfig;
  readonly address?: string;
  /** 6386 by default; 0 picks a free port (tests). */
  readonly port?: number;
  /** Served at /metrics (Prometheus text format) when given. */
  readonly metrics?: { readonly contentType: string; metrics(): Promise<string> };
  /** The controller's logger; silent by default. Never given a script body (it holds a token). */
  readonly log?: Logger;
  /** Serves the metadata service (OpenStack and EC2 paths) when given. */
  readonly metadata?: MetadataSource;
}

export interface HttpBootStats {
  scripts: number;
  notFound: number;
  refused: number;
  /** /images/ requests from an address that is no provisioning client. */
  strangers: number;
  blobs: number;
  ranges: number;
  errors: number;
}

export class HttpBootServer {
  readonly stats: HttpBootStats = { scripts: 0, notFound: 0, refused: 0, strangers: 0, blobs: 0, ranges: 0, errors: 0 };
  private readonly o: HttpBootOptions;
  private server: Server | null = null;
  private readonly log: Logger;
  private readonly limiter = new LogLimiter();

  constructor(options: HttpBootOptions) {
    this.o = options;
    this.log = (options.log ?? silentLogger).child({ component: 'http-boot' });
  }

  async start(): Promise<{ address: string; port: number }> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.stats.errors++;
        const admitted = this.limiter.admit('error');
        if (admitted)
          this.log.error(
            { client: req.socket.remoteAddress, path: (req.url ?? '').split('?')[0], err: errorText(err), suppressed: admitted.suppressed },
            'HTTP boot request failed',
          );
        if (!res.headersSent) this.plain(res, 500, 'internal error\n');
        else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.o.port ?? 6386, this.o.address ?? '0.0.0.0', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const a = server.address() as AddressInfo;
    return { address: a.address, port: a.port };
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private plain(res: ServerResponse, status: number, body: string): void {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return this.plain(res, 405, 'method not allowed\n');
    }
    const rawPath = (req.url ?? '/').split('?')[0]!;
    const script = /^\/boot\/([^/]+)\.ipxe$/.exec(rawPath);
    if (script) return this.serveScript(script[1]!, req, res);
    if (rawPath.startsWith('/images/')) return this.serveBlob(rawPath.slice('/images/'.length), req, res);
    if (this.o.metadata && isMetadataPath(rawPath)) {
      const client = clientIpv4(req.socket.remoteAddress);
      const answer = answerMetadata(rawPath, client ? await this.o.metadata.documentsFor(client) : null);
      if (answer.status === 404) this.stats.notFound++;
      res.writeHead(answer.status, {
        'content-type': answer.contentType,
        'content-length': Buffer.byteLength(answer.body),
        'cache-control': 'no-store',
      });
      res.end(req.method === 'HEAD' ? undefined : answer.body);
      return;
    }
    // The CA certificate is public; agents check it against the fingerprint their command line carries.
    if (rawPath === AGENT_CA_PATH && this.o.plan.agentCa) {
      res.writeHead(200, { 'content-type': 'application/x-pem-file', 'content-length': this.o.plan.agentCa.pem.length });
      res.end(req.method === 'HEAD' ? undefined : this.o.plan.agentCa.pem);
      return;
    }
    if (rawPath === '/metrics' && this.o.metrics) {
      const body = await this.o.metrics.metrics();
      res.writeHead(200, { 'content-type': this.o.metrics.contentType, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    this.stats.notFound++;
    return this.plain(res, 404, 'not found\n');
  }

  private async serveScript(macText: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    let mac: string;
    try {
      mac = normalizeMac(decodeURIComponent(macText));
    } catch {
      this.stats.notFound++;
      return this.plain(res, 404, 'not a MAC address\n');
    }
    // A script that would carry the node's agent token goes only to the machine itself: look first
    // (without handing the token out), check the caller, and only then fetch it for real.
    const peeked = await this.o.states.bootStateFor(mac, { peek: true });
    if (peeked?.agentToken) {
      const client = clientIpv4(req.socket.remoteAddress);
      if (!client || !(await this.o.clients.allowsFor(client, mac))) {
        this.stats.strangers++;
        const admitted = this.limiter.admit('script-stranger');
        if (admitted)
          this.log.warn(
            { mac, client: req.socket.remoteAddress, rule: this.o.clients.rule, suppressed: admitted.suppressed },
            'boot script with an agent token refused to an address that is not this machine',
          );
        return this.plain(res, 403, 'this boot script is served to the machine itself only\n');
      }
    }
    const plan = planBoot(peeked?.agentToken ? await this.o.states.bootStateFor(mac) : peeked, this.o.plan);
    if (plan === null) {
      this.stats.notFound++;
      return this.plain(res, 404, 'nothing to boot for this MAC\n');
    }
    const body = renderIpxeScript(plan);
    this.stats.scripts++;
    this.log.info(
      { mac, client: req.socket.remoteAddress, boot: plan.kind === 'local-disk' ? 'local-disk' : plan.purpose },
      'iPXE script served',
    );
    res.writeHead(200, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private async serveBlob(encoded: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const client = clientIpv4(req.socket.remoteAddress);
    if (client === null || !(await this.o.clients.allows(client))) {
      this.stats.strangers++;
      const admitted = this.limiter.admit('stranger');
      if (admitted)
        this.log.warn(
          { client: req.socket.remoteAddress, path: `/images/${encoded}`, rule: this.o.clients.rule, suppressed: admitted.suppressed },
          'boot image refused to a non-provisioning address',
        );
      return this.plain(res, 403, 'boot images are served to provisioning clients only\n');
    }
    let name: string;
    try {
      // Decoded once, then checked: %2e%2e and %2f cannot smuggle a `..` past the check.
      name = decodeURIComponent(encoded);
    } catch {
      return this.plain(res, 400, 'bad path encoding\n');
    }
    let blob;
    try {
      blob = await this.o.blobs.open(name);
    } catch (err) {
      if (err instanceof PathOutsideRootError) {
        this.stats.refused++;
        return this.plain(res, 403, 'outside the served root\n');
      }
      if (err instanceof NotBootBlobError) {
        this.stats.refused++;
        return this.plain(res, 403, 'only kernels and ramdisks are served here\n');
      }
      if (err instanceof BmError && err.code === 'not-found') {
        this.stats.notFound++;
        return this.plain(res, 404, 'not found\n');
      }
      throw err;
    }
    const range = parseRange(req.headers.range, blob.size);
    const headers: Record<string, string | number> = { 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
    if (blob.modified) headers['last-modified'] = blob.modified.toUTCString();
    if (range.kind === 'unsatisfiable') {
      res.writeHead(416, { ...headers, 'content-range': `bytes */${blob.size}`, 'content-length': 0 });
      res.end();
      return;
    }
    const start = range.kind === 'range' ? range.start : 0;
    const end = range.kind === 'range' ? range.end : blob.size - 1;
    const length = blob.size === 0 ? 0 : end - start + 1;
    if (range.kind === 'range') {
      this.stats.ranges++;
      res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${blob.size}`, 'content-length': length });
    } else res.writeHead(200, { ...headers, 'content-length': length });
    this.stats.blobs++;
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }
    await pipeline(blob.stream(start, end), res);
  }
}
