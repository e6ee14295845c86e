/**
 * One read transfer: its own socket (the server's transfer id, RFC 1350
 * section 4), a window of blocks in flight (RFC 7440; window 1 is lock-step
 * RFC 1350), retransmission driven only by our timer. A duplicate ACK never
 * triggers a resend: that is what causes the sorcerer's apprentice storm
 * (RFC 1123 section 4.2.3.1).
 */
import type { Socket, RemoteInfo } from 'node:dgram';
import type { TftpFile } from './file-source.ts';
import type { NegotiatedTransfer } from './options.ts';
import { encodeError, encodeOack, parsePacket, TftpErrorCode } from './packet.ts';
import type { TftpStats } from './stats.ts';

/**
 * Read-ahead per transfer: bounded memory (two buffers of this size at most),
 * few reads per window. The next buffer is read while the current one is
 * still being sent, so a lock-step transfer never stops for the disk.
 */
const READ_AHEAD_BYTES = 256 * 1024;

export interface TransferParams {
  readonly socket: Socket;
  readonly peerAddress: string;
  readonly peerPort: number;
  readonly file: TftpFile;
  readonly negotiated: NegotiatedTransfer;
  readonly timeoutMs: number;
  readonly maxRetries: number;
  readonly stats: TftpStats;
  readonly onEnd: (ok: boolean) => void;
}

export class ReadTransfer {
  private readonly p: TransferParams;
  private readonly blockSize: number;
  private readonly window: number;
  private readonly totalBlocks: number;
  private awaitingOackAck: boolean;
  /** First block not yet acknowledged (absolute, from 1). */
  private base = 1;
  private sentUpTo = 0;
  private retries = 0;
  private ended = false;
  private pumping = false;
  private pumpAgain = false;
  private timer: NodeJS.Timeout | null = null;
  /** When the current window was (re)sent; the timer compares against it instead of being re-armed per packet. */
  private sentAt = 0;
  private cache: Buffer = Buffer.alloc(0);
  private cacheStart = 0;
  private ring: Buffer[] = [];
  private prefetched: { readonly start: number; readonly done: Promise<Buffer>; ready: Buffer | null } | null = null;

  constructor(params: TransferParams) {
    this.p = params;
    this.blockSize = params.negotiated.blockSize;
    this.window = params.negotiated.windowSize;
    // A file that is a multiple of the block size ends with an empty block.
    this.totalBlocks = Math.floor(params.file.size / this.blockSize) + 1;
    this.awaitingOackAck = params.negotiated.accepted.size > 0;
    params.socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    params.socket.on('error', () => this.end(false));
  }

  start(): void {
    if (this.awaitingOackAck) {
      this.sendOack();
      this.armTimer();
    } else {
      void this.pump();
    }
  }

  private send(packet: Uint8Array | readonly Uint8Array[]): void {
    if (this.ended) return;
    try {
      this.p.socket.send(packet as Uint8Array, this.p.peerPort, this.p.peerAddress);
    } catch {
      this.end(false);
    }
  }

  private sendOack(): void {
    this.send(encodeOack(this.p.negotiated.accepted));
  }

  private armTimer(): void {
    if (this.ended) return;
    this.sentAt = performance.now();
    // Lock-step transfers re-arm once per block: touching the timer list each
    // time costs more than checking the elapsed time when it fires.
    if (this.timer === null) this.timer = setTimeout(() => this.onTimeout(), this.p.timeoutMs);
  }

  private onTimeout(): void {
    this.timer = null;
    if (this.ended) return;
    const waited = performance.now() - this.sentAt;
    if (waited < this.p.timeoutMs) {
      this.timer = setTimeout(() => this.onTimeout(), this.p.timeoutMs - waited);
      return;
    }
    if (++this.retries > this.p.maxRetries) {
      this.send(encodeError(TftpErrorCode.notDefined, 'timed out'));
      this.end(false);
      return;
    }
    this.p.stats.retransmits++;
    if (this.awaitingOackAck) {
      this.sendOack();
      this.armTimer();
    } else void this.pump();
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.ended) return;
    if (rinfo.address !== this.p.peerAddress || rinfo.port !== this.p.peerPort) {
      // RFC 1350 section 4: a packet from a foreign TID gets ERROR 5 and does not disturb the transfer.
      this.p.stats.foreignTid++;
      try {
        this.p.socket.send(encodeError(TftpErrorCode.unknownTransferId, 'unknown transfer id'), rinfo.port, rinfo.address);
      } catch {
        /* best effort */
      }
      return;
    }
    // Hot path of every lock-step round trip: a well-formed ACK, no parsing objects.
    if (msg.length === 4 && msg[0] === 0 && msg[1] === 4) {
      this.onAck((msg[2]! << 8) | msg[3]!);
      return;
    }
    let packet;
    try {
      packet = parsePacket(msg);
    } catch {
      this.p.stats.malformed++;
      return;
    }
    if (packet.kind === 'error') {
      this.end(false);
      return;
    }
    if (packet.kind !== 'ack') {
      this.p.stats.malformed++;
      return;
    }
    this.onAck(packet.block);
  }

  private onAck(block: number): void {
    if (this.awaitingOackAck) {
      if (block !== 0) return;
      this.awaitingOackAck = false;
      this.retries = 0;
      void this.pump();
      return;
    }
    const lastAcked = this.base - 1;
    // Block numbers are 16 bits and roll over; map the ACK into [lastAcked, sentUpTo].
    const delta = (block - (lastAcked & 0xffff)) & 0xffff;
    if (delta === 0 || lastAcked + delta > this.sentUpTo) {
      this.p.stats.duplicateAcks++;
      return;
    }
    this.base = lastAcked + delta + 1;
    this.retries = 0;
    if (this.base > this.totalBlocks) {
      this.end(true);
      return;
    }
    if (!this.pumping && this.sendWindowIfCached()) return;
    void this.pump();
  }

  /** Sends the window starting at `base`; coalesces calls that arrive while a read is pending. */
  private async pump(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        const first = this.base;
        const last = Math.min(this.totalBlocks, first + this.window - 1);
        const loading = this.ensureCached(first, last);
        if (loading) await loading;
        if (this.ended) return;
        if (this.pumpAgain) continue;
        for (let block = first; block <= last; block++) this.sendBlock(block);
        if (last > this.sentUpTo) this.sentUpTo = last;
        this.armTimer();
        this.prefetchIfHalfway(Math.min(this.p.file.size, last * this.blockSize));
      } while (this.pumpAgain && !this.ended);
    } catch {
      this.send(encodeError(TftpErrorCode.notDefined, 'read error'));
      this.end(false);
    } finally {
      this.pumping = false;
    }
  }

  /** The common case, without a promise: the next window is already read. */
  private sendWindowIfCached(): boolean {
    const first = this.base;
    const last = Math.min(this.totalBlocks, first + this.window - 1);
    const start = (first - 1) * this.blockSize;
    const end = Math.min(this.p.file.size, last * this.blockSize);
    if (!this.covers(start, end) && !this.takePrefetched(start, end)) return false;
    for (let block = first; block <= last; block++) this.sendBlock(block);
    if (last > this.sentUpTo) this.sentUpTo = last;
    this.armTimer();
    this.prefetchIfHalfway(end);
    return true;
  }

  private covers(start: number, end: number): boolean {
    return start >= this.cacheStart && end <= this.cacheStart + this.cache.length;
  }

  /** Swaps in the read-ahead buffer when it is ready and holds [start, end). */
  private takePrefetched(start: number, end: number): boolean {
    const next = this.prefetched;
    if (!next?.ready || start < next.start || end > next.start + next.ready.length) return false;
    this.cache = next.ready;
    this.cacheStart = next.start;
    this.prefetched = null;
    return true;
  }

  /** Once half the current buffer is sent, starts reading the next one. */
  private prefetchIfHalfway(sentEnd: number): void {
    const cacheEnd = this.cacheStart + this.cache.length;
    if (this.prefetched !== null || cacheEnd >= this.p.file.size || sentEnd - this.cacheStart < this.cache.length / 2) return;
    // Block-aligned, so the block straddling the end of this buffer is whole in the next.
    const start = Math.floor(cacheEnd / this.blockSize) * this.blockSize;
    const entry: { start: number; done: Promise<Buffer>; ready: Buffer | null } = {
      start,
      done: this.readAt(start, READ_AHEAD_BYTES),
      ready: null,
    };
    entry.done.then(
      (buffer) => (entry.ready = buffer),
      () => {
        // A failed read-ahead is retried by the ordinary path, which reports the error.
        if (this.prefetched === entry) this.prefetched = null;
      },
    );
    this.prefetched = entry;
  }

  private async readAt(start: number, wanted: number): Promise<Buffer> {
    const length = Math.min(this.p.file.size - start, wanted);
    // A fresh buffer each time: sends still queued keep referencing the old one.
    const buffer = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const n = await this.p.file.read(buffer.subarray(filled), length - filled, start + filled);
      if (n === 0) break;
      filled += n;
    }
    return buffer.subarray(0, filled);
  }

  private ensureCached(first: number, last: number): Promise<void> | null {
    const start = (first - 1) * this.blockSize;
    const end = Math.min(this.p.file.size, last * this.blockSize);
    if (this.covers(start, end) || this.takePrefetched(start, end)) return null;
    return (async () => {
      const pending = this.prefetched;
      if (pending && start >= pending.start && start < pending.start + READ_AHEAD_BYTES) {
        await pending.done.catch(() => undefined);
        if (this.takePrefetched(start, end)) return;
      }
      this.cache = await this.readAt(start, Math.max(end - start, READ_AHEAD_BYTES));
      this.cacheStart = start;
    })();
  }

  private sendBlock(block: number): void {
    const offset = (block - 1) * this.blockSize - this.cacheStart;
    const data = this.cache.subarray(offset, Math.min(this.cache.length, offset + this.blockSize));
    const packet = this.packetBuffer(block, 4 + data.length);
    packet[0] = 0;
    packet[1] = 3;
    packet[2] = (block >> 8) & 0xff;
    packet[3] = block & 0xff;
    data.copy(packet, 4);
    this.p.stats.bytesSent += data.length;
    this.send(packet);
  }

  /**
   * A buffer for block's DATA packet. Packets go out with a synchronous
   * try-send, which copies them into the kernel, so a small ring of buffers
   * is reused instead of allocating one per block (the garbage showed as GC
   * time in lock-step profiles). A slot is reused only once every block
   * sent from it is acknowledged (the ring holds two windows), and never
   * while Node holds queued sends that could still reference one.
   */
  private packetBuffer(block: number, length: number): Buffer {
    if (this.p.socket.getSendQueueCount() > 0) return Buffer.allocUnsafe(length);
    if (this.ring.length === 0) {
      this.ring = Array.from({ length: 2 * this.window + 2 }, () => Buffer.allocUnsafe(4 + this.blockSize));
    }
    return this.ring[block % this.ring.length]!.subarray(0, length);
  }

  private end(ok: boolean): void {
    if (this.ended) return;
    this.ended = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    try {
      this.p.socket.close();
    } catch {
      /* already closed */
    }
    void this.p.file.close().catch(() => undefined);
    this.p.onEnd(ok);
  }

  abort(): void {
    this.end(false);
  }
}
