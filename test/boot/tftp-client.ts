/**
 * A small TFTP read client for tests and benchmarks, written because neither
 * tftp-hpa's nor busybox's client speaks windowsize (RFC 7440). Streams the
 * file into a SHA-256, never holding it whole. Also runnable as a program
 * (inside a namespace): node tftp-client.ts HOST PORT FILE [BLKSIZE] [WINDOW]
 * prints {"bytes":N,"sha256":"...","ms":N,"options":{...}}.
 */
import { createHash } from 'node:crypto';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { encodeAck, encodeError, encodeRequest, parsePacket, TftpErrorCode } from '../../controller/boot/tftp/packet.ts';

export interface TftpGetOptions {
  readonly host: string;
  readonly port?: number;
  readonly file: string;
  readonly blksize?: number;
  readonly windowsize?: number;
  readonly tsize?: boolean;
  readonly timeoutMs?: number;
  readonly retries?: number;
}

export interface TftpGetResult {
  readonly bytes: number;
  readonly sha256: string;
  readonly ms: number;
  readonly options: Readonly<Record<string, string>>;
}

export class TftpClientError extends Error {
  readonly tftpCode: number | null;
  constructor(message: string, tftpCode: number | null) {
    super(message);
    this.tftpCode = tftpCode;
  }
}

export function tftpGet(o: TftpGetOptions): Promise<TftpGetResult> {
  const port = o.port ?? 69;
  const timeoutMs = o.timeoutMs ?? 1000;
  const retries = o.retries ?? 5;
  const requested = new Map<string, string>();
  if (o.blksize !== undefined) requested.set('blksize', String(o.blksize));
  if (o.tsize) requested.set('tsize', '0');
  if (o.windowsize !== undefined) requested.set('windowsize', String(o.windowsize));
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    const hash = createHash('sha256');
    let peer: { address: string; port: number } | null = null;
    let blockSize = 512;
    let window = 1;
    let expected = 1;
    let inWindow = 0;
    let bytes = 0;
    let lastAck: Uint8Array | null = null;
    let gapAcked = false;
    let tries = 0;
    let done = false;
    const options: Record<string, string> = {};
    const request = encodeRequest('rrq', o.file, 'octet', requested);
    const finish = (err: Error | null, lastPacket?: Uint8Array): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // Close only once the final ACK has left: closing with a send still queued drops it,
      // and the server would then retransmit the last block until it gives up.
      if (lastPacket && peer) socket.send(lastPacket, peer.port, peer.address, () => socket.close());
      else socket.close();
      if (err) reject(err);
      else resolve({ bytes, sha256: hash.digest('hex'), ms: performance.now() - started, options });
    };
    const send = (packet: Uint8Array): void => {
      if (peer) socket.send(packet, peer.port, peer.address);
      else socket.send(request, port, o.host);
    };
    const onTimeout = (): void => {
      if (++tries > retries) return finish(new TftpClientError('timed out', null));
      if (lastAck) send(lastAck);
      else socket.send(request, port, o.host);
      timer = setTimeout(onTimeout, timeoutMs);
    };
    let timer = setTimeout(onTimeout, timeoutMs);
    const ack = (block: number): void => {
      lastAck = encodeAck(block & 0xffff);
      send(lastAck);
    };
    socket.on('error', (err) => finish(err));
    socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      if (peer === null) peer = { address: rinfo.address, port: rinfo.port };
      else if (peer.port !== rinfo.port || peer.address !== rinfo.address) {
        socket.send(encodeError(TftpErrorCode.unknownTransferId, 'unknown transfer id'), rinfo.port, rinfo.address);
        return;
      }
      let packet;
      try {
        packet = parsePacket(msg);
      } catch (err) {
        return finish(err as Error);
      }
      tries = 0;
      timer.refresh();
      if (packet.kind === 'error') return finish(new TftpClientError(`TFTP error ${packet.code}: ${packet.message}`, packet.code));
      if (packet.kind === 'oack') {
        for (const [k, v] of packet.options) options[k] = v;
        if (options.blksize) blockSize = Number(options.blksize);
        if (options.windowsize) window = Number(options.windowsize);
        ack(0);
        return;
      }
      if (packet.kind !== 'data') return;
      if (packet.block !== (expected & 0xffff)) {
        // RFC 7440: on a gap, acknowledge the last block received in order, once.
        if (!gapAcked) {
          gapAcked = true;
          inWindow = 0;
          ack(expected - 1);
        }
        return;
      }
      gapAcked = false;
      hash.update(packet.data);
      bytes += packet.data.length;
      expected++;
      inWindow++;
      const last = packet.data.length < blockSize;
      if (last) return finish(null, encodeAck((expected - 1) & 0xffff));
      if (inWindow >= window) {
        inWindow = 0;
        ack(expected - 1);
      }
    });
    socket.bind(0, () => socket.send(request, port, o.host));
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [host, port, file, blksize, windowsize] = process.argv.slice(2);
  if (!host || !port || !file) {
    process.stderr.write('usage: tftp-client.ts HOST PORT FILE [BLKSIZE] [WINDOW]\n');
    process.exit(2);
  }
  tftpGet({
    host,
    port: Number(port),
    file,
    ...(blksize && blksize !== '0' ? { blksize: Number(blksize) } : {}),
    ...(windowsize && windowsize !== '0' ? { windowsize: Number(windowsize) } : {}),
    timeoutMs: 500,
    retries: 10,
  }).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
