/**
 * A read-only TFTP server: requests on one well-known socket, each transfer
 * on its own ephemeral socket. Malformed datagrams are dropped and counted;
 * write requests, paths outside the root and unknown files get a TFTP error.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { BmError } from '../../errors.ts';
import { PathOutsideRootError } from '../errors.ts';
import type { TftpFileSource } from './file-source.ts';
import { negotiate } from './options.ts';
import { encodeError, parsePacket, TftpErrorCode } from './packet.ts';
import { emptyTftpStats, type TftpStats } from './stats.ts';
import { ReadTransfer } from './transfer.ts';
import type { Logger } from 'pino';
import { LogLimiter, silentLogger } from '../log-limiter.ts';

export interface TftpServerOptions {
  readonly source: TftpFileSource;
  /** Address to bind; 0.0.0.0 serves every interface of the namespace. */
  readonly address?: string;
  /** 69 by default; 0 picks a free port (tests). */
  readonly port?: number;
  readonly maxBlockSize?: number;
  readonly maxWindowSize?: number;
  /** Retransmission timeout when the client did not negotiate one. */
  readonly timeoutMs?: number;
  readonly maxRetries?: number;
  /** Concurrency bound: requests beyond it get "busy". */
  readonly maxTransfers?: number;
  /** The controller's logger; silent by default. */
  readonly log?: Logger;
}

/** dgram's address lookup for IPv4 literals only, answered at once (see the transfer sockets). */
function literalLookup(address: string, _options: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  callback(null, address, 4);
}

export class TftpServer {
  readonly stats: TftpStats = emptyTftpStats();
  private readonly opts: Required<Omit<TftpServerOptions, 'log'>>;
  private readonly log: Logger;
  private readonly limiter = new LogLimiter();
  private socket: Socket | null = null;
  /** Transfers by client address:port; null while the file opens. */
  private readonly active = new Map<string, ReadTransfer | null>();

  constructor(options: TftpServerOptions) {
    this.opts = {
      address: '0.0.0.0',
      port: 69,
      maxBlockSize: 65464,
      maxWindowSize: 64,
      timeoutMs: 1000,
      maxRetries: 5,
      maxTransfers: 1024,
      ...options,
    };
    this.log = (options.log ?? silentLogger).child({ component: 'tftp' });
  }

  get activeTransfers(): number {
    return this.active.size;
  }

  async start(): Promise<{ address: string; port: number }> {
    const socket = createSocket({ type: 'udp4', reuseAddr: true });
    socket.on('message', (msg, rinfo) => void this.onRequest(msg, rinfo));
    socket.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ port: this.opts.port, address: this.opts.address }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    try {
      // Many ROMs ask at once when a rack powers on; queue their requests rather than drop them.
      socket.setRecvBufferSize(1 << 20);
    } catch {
      /* above net.core.rmem_max: keep the default */
    }
    this.socket = socket;
    return socket.address();
  }

  async close(): Promise<void> {
    for (const t of this.active.values()) t?.abort();
    this.active.clear();
    const socket = this.socket;
    this.socket = null;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }

  private replyError(rinfo: RemoteInfo, code: number, message: string): void {
    // Errors for a request come from a fresh port, as a transfer would (RFC 1350 section 4).
    const s = createSocket('udp4');
    s.on('error', () => s.close());
    s.bind({ port: 0, address: this.opts.address }, () => {
      s.send(encodeError(code, message), rinfo.port, rinfo.address, () => s.close());
    });
  }

  private async onRequest(msg: Buffer, rinfo: RemoteInfo): Promise<void> {
    let packet;
    try {
      packet = parsePacket(msg);
    } catch {
      this.stats.malformed++;
      return;
    }
    if (packet.kind === 'wrq') {
      this.stats.refused++;
      this.replyError(rinfo, TftpErrorCode.accessViolation, 'read-only server');
      return;
    }
    if (packet.kind !== 'rrq') {
      // Stray DATA/ACK/ERROR on the request port: not a request, drop it.
      this.stats.malformed++;
      return;
    }
    this.stats.requests++;
    const key = `${rinfo.address}:${rinfo.port}`;
    // A retransmitted RRQ while its transfer runs: the transfer's own timer recovers.
    if (this.active.has(key)) return;
    if (this.active.size >= this.opts.maxTransfers) {
      const admitted = this.limiter.admit('busy');
      if (admitted)
        this.log.warn(
          { client: key, file: packet.filename, active: this.active.size, suppressed: admitted.suppressed },
          'TFTP busy: request refused',
        );
      this.replyError(rinfo, TftpErrorCode.notDefined, 'server busy');
      return;
    }
    if (packet.mode === 'mail') {
      this.replyError(rinfo, TftpErrorCode.illegalOperation, 'mail mode not supported');
      return;
    }
    // Claimed before the first await: a client that retransmits its RRQ
    // while the file opens must not get a second transfer.
    this.active.set(key, null);
    let file;
    try {
      file = await this.opts.source.open(packet.filename);
    } catch (err) {
      this.active.delete(key);
      if (err instanceof PathOutsideRootError) {
        this.stats.refused++;
        const admitted = this.limiter.admit('refused');
        if (admitted)
          this.log.warn({ client: key, file: packet.filename, suppressed: admitted.suppressed }, 'TFTP path outside the root refused');
        this.replyError(rinfo, TftpErrorCode.accessViolation, 'access outside the root refused');
      } else {
        this.stats.notFound++;
        this.log.debug({ client: key, file: packet.filename }, 'TFTP file not found');
        const code = err instanceof BmError && err.code === 'not-found' ? TftpErrorCode.fileNotFound : TftpErrorCode.notDefined;
        this.replyError(rinfo, code, code === TftpErrorCode.fileNotFound ? 'file not found' : 'cannot read file');
      }
      return;
    }
    if (this.socket === null) {
      this.active.delete(key);
      await file.close();
      return;
    }
    const negotiated = negotiate(packet.options, file.size, {
      maxBlockSize: this.opts.maxBlockSize,
      maxWindowSize: this.opts.maxWindowSize,
    });
    // Not connected: a connected socket makes the kernel drop (and ICMP) a
    // packet from a foreign TID, where RFC 1350 wants ERROR 5 sent to it.
    // The lookup is answered synchronously, since every peer is an address
    // literal: the default defers each send by a tick, which lock-step feels.
    const socket = createSocket({ type: 'udp4', lookup: literalLookup });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind({ port: 0, address: this.opts.address }, () => {
          socket.off('error', reject);
          resolve();
        });
      });
    } catch {
      this.active.delete(key);
      await file.close();
      this.stats.transfersFailed++;
      return;
    }
    const transfer = new ReadTransfer({
      socket,
      peerAddress: rinfo.address,
      peerPort: rinfo.port,
      file,
      negotiated,
      timeoutMs: negotiated.timeoutMs ?? this.opts.timeoutMs,
      maxRetries: this.opts.maxRetries,
      stats: this.stats,
      onEnd: (ok) => {
        this.active.delete(key);
        if (ok) {
          this.stats.transfersCompleted++;
          this.log.debug({ client: key, file: packet.filename, bytes: file.size }, 'TFTP transfer done');
          return;
        }
        this.stats.transfersFailed++;
        const admitted = this.limiter.admit('failed');
        if (admitted)
          this.log.warn(
            { client: key, file: packet.filename, suppressed: admitted.suppressed },
            'TFTP transfer failed (client gone, timed out or sent an error)',
          );
      },
    });
    this.active.set(key, transfer);
    this.stats.transfersStarted++;
    transfer.start();
  }
}
