/**
 * The TFTP server against real clients: tftp-hpa's `tftp` (RFC 1350 only: its
 * 5.2 client negotiates no options), busybox's `tftp -b` (blksize), and our
 * own test client for windowsize, which neither real client speaks.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DirectoryFileSource } from '../../controller/boot/tftp/file-source.ts';
import { encodeAck, encodeRequest, parsePacket } from '../../controller/boot/tftp/packet.ts';
import { TftpServer } from '../../controller/boot/tftp/server.ts';
import { requirePeer } from './peers.ts';
import { tftpGet, TftpClientError } from './tftp-client.ts';

const run = promisify(execFile);
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

let dir: string;
let root: string;
let server: TftpServer;
let port: number;
const files: Record<string, Buffer> = {
  'undionly.kpxe': randomBytes(70_001),
  'exact.bin': randomBytes(512 * 40),
  'sub/dir/big.bin': randomBytes(3 * 1024 * 1024 + 17),
  'empty.bin': Buffer.alloc(0),
};

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'bm-tftp-'));
  root = path.join(dir, 'root');
  for (const [name, data] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await writeFile(path.join(root, name), data);
  }
  await writeFile(path.join(dir, 'secret.txt'), 'outside the root\n');
  await symlink(path.join(dir, 'secret.txt'), path.join(root, 'escape'));
  await symlink('undionly.kpxe', path.join(root, 'inside-link'));
  server = new TftpServer({ source: new DirectoryFileSource(root), address: '127.0.0.1', port: 0, timeoutMs: 300 });
  port = (await server.start()).port;
});

afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function hpaGet(remote: string): Promise<{ local: string; output: string }> {
  const tftp = requirePeer('/usr/bin/tftp');
  const local = path.join(dir, `got-${randomBytes(4).toString('hex')}`);
  const { stdout, stderr } = await run(tftp, ['-m', 'binary', '127.0.0.1', String(port), '-c', 'get', remote, local], { timeout: 20_000 });
  return { local, output: stdout + stderr };
}

describe('TFTP server with real clients', () => {
  it('serves files byte-exact to tftp-hpa in binary mode (plain RFC 1350, 512-byte blocks)', async () => {
    for (const name of ['undionly.kpxe', 'exact.bin', 'sub/dir/big.bin', 'inside-link']) {
      const { local, output } = await hpaGet(name);
      expect(output).not.toMatch(/Error/);
      const expected = files[name === 'inside-link' ? 'undionly.kpxe' : name]!;
      expect(sha(await readFile(local))).toBe(sha(expected));
    }
  });

  it('serves files to busybox tftp with a negotiated blksize', async () => {
    const busybox = requirePeer('/usr/bin/busybox');
    const before = server.stats.transfersCompleted;
    for (const blksize of ['1428', '8192']) {
      const local = path.join(dir, `bb-${blksize}`);
      await run(busybox, ['tftp', '-g', '-b', blksize, '-r', 'sub/dir/big.bin', '-l', local, '127.0.0.1', String(port)], {
        timeout: 20_000,
      });
      expect(sha(await readFile(local))).toBe(sha(files['sub/dir/big.bin']!));
    }
    expect(server.stats.transfersCompleted).toBe(before + 2);
  });

  it('negotiates windowsize, blksize and tsize with an RFC 7440 client', async () => {
    for (const windowsize of [1, 16, 64]) {
      const got = await tftpGet({ host: '127.0.0.1', port, file: 'sub/dir/big.bin', blksize: 1428, windowsize, tsize: true });
      expect(got.sha256).toBe(sha(files['sub/dir/big.bin']!));
      expect(got.options).toEqual({ blksize: '1428', windowsize: String(windowsize), tsize: String(files['sub/dir/big.bin']!.length) });
    }
    const empty = await tftpGet({ host: '127.0.0.1', port, file: 'empty.bin', windowsize: 8 });
    expect(empty.bytes).toBe(0);
    const exact = await tftpGet({ host: '127.0.0.1', port, file: 'exact.bin', blksize: 512, windowsize: 7 });
    expect(exact.sha256).toBe(sha(files['exact.bin']!));
  });

  it('refuses ../, absolute paths and a symlink out of the root with a TFTP error (tftp-hpa)', async () => {
    for (const name of ['../secret.txt', 'sub/../../secret.txt', '/etc/passwd', path.join(dir, 'secret.txt'), 'escape']) {
      const { local, output } = await hpaGet(name);
      expect(output, name).toMatch(/Error code 2: access outside the root refused/);
      await expect(readFile(local, 'utf8').catch(() => '')).resolves.not.toContain('outside the root');
    }
    const missing = await hpaGet('no-such-file');
    expect(missing.output).toMatch(/Error code 1: file not found/);
  });

  it('refuses the same escapes from the windowsize client', async () => {
    const err = await tftpGet({ host: '127.0.0.1', port, file: '../secret.txt', windowsize: 4 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TftpClientError);
    expect((err as TftpClientError).tftpCode).toBe(2);
  });

  it('serves many concurrent transfers', async () => {
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        tftpGet({ host: '127.0.0.1', port, file: 'undionly.kpxe', blksize: 1024, windowsize: (i % 8) + 1 }),
      ),
    );
    for (const r of results) expect(r.sha256).toBe(sha(files['undionly.kpxe']!));
  });
});

describe('TFTP server retransmission', () => {
  async function rawClient(): Promise<{ socket: Socket; next: (ms: number) => Promise<{ data: Buffer; port: number } | null> }> {
    const socket = createSocket('udp4');
    const queue: { data: Buffer; port: number }[] = [];
    const waiters: ((m: { data: Buffer; port: number }) => void)[] = [];
    socket.on('message', (data, rinfo) => {
      const w = waiters.shift();
      if (w) w({ data, port: rinfo.port });
      else queue.push({ data, port: rinfo.port });
    });
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    const next = (ms: number): Promise<{ data: Buffer; port: number } | null> => {
      const q = queue.shift();
      if (q) return Promise.resolve(q);
      return new Promise((resolve) => {
        const w = (m: { data: Buffer; port: number }): void => {
          clearTimeout(t);
          resolve(m);
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          resolve(null);
        }, ms);
        waiters.push(w);
      });
    };
    return { socket, next };
  }

  it('retransmits a lost block after its timeout', async () => {
    const { socket, next } = await rawClient();
    socket.send(encodeRequest('rrq', 'exact.bin'), port, '127.0.0.1');
    const first = await next(1000);
    expect(first && parsePacket(first.data)).toMatchObject({ kind: 'data', block: 1 });
    // Not acknowledged: the server must send block 1 again after ~300 ms.
    const again = await next(1000);
    expect(again && parsePacket(again.data)).toMatchObject({ kind: 'data', block: 1 });
    socket.close();
  });

  it("answers a duplicate ACK with nothing (no sorcerer's apprentice)", async () => {
    const { socket, next } = await rawClient();
    socket.send(encodeRequest('rrq', 'exact.bin'), port, '127.0.0.1');
    const first = await next(1000);
    expect(first).not.toBeNull();
    const tid = first!.port;
    socket.send(encodeAck(1), tid, '127.0.0.1');
    const second = await next(1000);
    expect(second && parsePacket(second.data)).toMatchObject({ kind: 'data', block: 2 });
    const dupsBefore = server.stats.duplicateAcks;
    socket.send(encodeAck(1), tid, '127.0.0.1');
    socket.send(encodeAck(1), tid, '127.0.0.1');
    // Within the retransmit timeout nothing may arrive: a duplicate ACK does not cause a resend.
    expect(await next(150)).toBeNull();
    expect(server.stats.duplicateAcks).toBe(dupsBefore + 2);
    socket.close();
  });

  it('answers a packet from a foreign port with ERROR 5 and goes on with the transfer untouched', async () => {
    const client = await rawClient();
    const stranger = await rawClient();
    client.socket.send(encodeRequest('rrq', 'exact.bin'), port, '127.0.0.1');
    const first = await client.next(1000);
    expect(first && parsePacket(first.data)).toMatchObject({ kind: 'data', block: 1 });
    const tid = first!.port;
    const foreignBefore = server.stats.foreignTid;
    // RFC 1350 section 4: the stray packet's source gets "unknown transfer ID"; the client sees nothing.
    stranger.socket.send(encodeAck(1), tid, '127.0.0.1');
    const error = await stranger.next(1000);
    expect(error && parsePacket(error.data)).toMatchObject({ kind: 'error', code: 5 });
    expect(error!.port).toBe(tid);
    expect(server.stats.foreignTid).toBe(foreignBefore + 1);
    const received: Buffer[] = [(parsePacket(first!.data) as { data: Uint8Array }).data as Buffer];
    for (let block = 1; ; block++) {
      client.socket.send(encodeAck(block), tid, '127.0.0.1');
      if (received.reduce((n, b) => n + b.length, 0) === files['exact.bin']!.length && received.at(-1)!.length === 0) break;
      let packet = null;
      // A retransmission of the previous block (300 ms timer on a busy machine) is skipped.
      do {
        const next = await client.next(1000);
        packet = next && parsePacket(next.data);
      } while (packet?.kind === 'data' && packet.block === block);
      expect(packet).toMatchObject({ kind: 'data', block: block + 1 });
      received.push(Buffer.from((packet as { data: Uint8Array }).data));
    }
    expect(Buffer.concat(received).equals(files['exact.bin']!)).toBe(true);
    client.socket.close();
    stranger.socket.close();
  });

  it('refuses write requests with an access violation', async () => {
    const { socket, next } = await rawClient();
    socket.send(encodeRequest('wrq', 'upload.bin'), port, '127.0.0.1');
    const reply = await next(1000);
    expect(reply && parsePacket(reply.data)).toMatchObject({ kind: 'error', code: 2 });
    socket.close();
  });
});
