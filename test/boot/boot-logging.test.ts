/**
 * The boot servers log through the controller's pino logger (captured here
 * from a stream): a lease backend that breaks mid-exchange (a real MariaDB
 * answering "Unknown database") is logged with the MAC, the transaction id
 * and the error, rate-limited in a storm; an unknown MAC is a quiet debug
 * line; a TFTP escape and an HTTP stranger leave one line each; a full-mode
 * server without a range is a typed error naming the key.
 */
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { afterEach, describe, expect, it } from 'vitest';
import { DhcpServer, type DhcpServerOptions } from '../../controller/boot/dhcp/server.ts';
import { BootConfigError } from '../../controller/boot/errors.ts';
import { DirectoryBlobSource } from '../../controller/boot/http/blob-source.ts';
import { NetworkGate, parseCidr } from '../../controller/boot/http/client-gate.ts';
import { HttpBootServer } from '../../controller/boot/http/server.ts';
import { MemoryBootBackend } from '../../controller/boot/memory-backend.ts';
import { DirectoryFileSource } from '../../controller/boot/tftp/file-source.ts';
import { TftpServer } from '../../controller/boot/tftp/server.ts';
import { MysqlBootBackend } from '../../controller/conductor/boot-backend.ts';
import { createLogger } from '../../controller/log/logger.ts';
import { MessageType, startRelay } from './dhcp-relay.ts';
import { requirePeer } from './peers.ts';

const run = promisify(execFile);
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Line {
  readonly level: number;
  readonly msg: string;
  readonly component?: string;
  readonly [key: string]: unknown;
}

function capture(level: string): { log: ReturnType<typeof createLogger>; lines: () => Line[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  const log = createLogger(level, stream);
  return {
    log,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as Line),
  };
}

const range = { start: '10.63.0.10', end: '10.63.0.200', netmask: '255.255.255.0', router: null, dns: [] };

async function dhcpServer(
  extra: Partial<DhcpServerOptions> & Pick<DhcpServerOptions, 'backend'>,
  relayPort: number,
): Promise<{ server: DhcpServer; to: { address: string; port: number } }> {
  const server = new DhcpServer({
    mode: 'full',
    serverAddress: '127.0.0.1',
    bindAddress: '127.0.0.1',
    serverPort: 0,
    relayPort,
    range,
    discovery: false,
    boot: { httpPort: 6386, biosFile: 'undionly.kpxe', efiFile: 'ipxe.efi' },
    ...extra,
  });
  const { server: port } = await server.start();
  cleanups.push(() => server.close());
  return { server, to: { address: '127.0.0.1', port: port! } };
}

describe('boot servers log', () => {
  it('logs a broken lease backend with MAC, xid and error, rate-limited across a storm', async () => {
    // A real MariaDB connection to a database that does not exist: every query fails.
    const pool = mysql.createPool({
      uri: `mysql://root@127.0.0.1:3306/bm_missing_${process.pid}_${Date.now().toString(36)}`,
      connectionLimit: 4,
    });
    cleanups.push(() => pool.end());
    const { log, lines } = capture('info');
    const relay = await startRelay('127.0.0.1');
    cleanups.push(() => relay.close());
    const { server, to } = await dhcpServer({ backend: new MysqlBootBackend(pool), log }, relay.port);
    const macs = Array.from({ length: 40 }, (_, i) => `52:54:00:10:00:${i.toString(16).padStart(2, '0')}`);
    const replies = await Promise.all(macs.map((mac) => relay.exchange(to, mac, MessageType.discover, [], 1500)));
    expect(replies.every((r) => r === null)).toBe(true);
    expect(server.stats.backendErrors).toBe(40);
    const failures = lines().filter((l) => l.msg === 'DHCP exchange failed in the lease backend');
    expect(failures.length).toBeGreaterThanOrEqual(1);
    // Rate-limited: a handful, not one per exchange.
    expect(failures.length).toBeLessThanOrEqual(5);
    const first = failures[0]!;
    expect(first.level).toBe(50);
    expect(first.component).toBe('dhcp');
    expect(macs).toContain(first.mac);
    expect(first.xid).toMatch(/^0x[0-9a-f]{8}$/);
    expect(first.err).toMatch(/Unknown database/);
    // Every datagram was handled; none threw out of the socket handler.
    expect(server.stats.received).toBe(40);
  });

  it('keeps an unknown MAC to a debug line', async () => {
    const relay = await startRelay('127.0.0.1');
    cleanups.push(() => relay.close());
    const quiet = capture('info');
    const a = await dhcpServer({ backend: new MemoryBootBackend(), log: quiet.log }, relay.port);
    expect(await relay.exchange(a.to, '52:54:00:10:01:01', MessageType.discover, [], 500)).toBeNull();
    expect(a.server.stats.unknownMac).toBe(1);
    expect(quiet.lines()).toEqual([]);
    const chatty = capture('debug');
    const b = await dhcpServer({ backend: new MemoryBootBackend(), log: chatty.log }, relay.port);
    await relay.exchange(b.to, '52:54:00:10:01:02', MessageType.discover, [], 500);
    const line = chatty.lines().find((l) => l.msg === 'unknown MAC, not answered');
    expect(line).toMatchObject({ level: 20, component: 'dhcp', mac: '52:54:00:10:01:02' });
    expect(line!.xid).toMatch(/^0x/);
  });

  it('refuses full mode without a range with a typed error naming the key', () => {
    const make = (): DhcpServer =>
      new DhcpServer({
        mode: 'full',
        backend: new MemoryBootBackend(),
        serverAddress: '127.0.0.1',
        discovery: false,
        boot: { httpPort: 6386, biosFile: 'a', efiFile: 'b' },
      });
    expect(make).toThrow(BootConfigError);
    expect(make).toThrow(/range_start/);
    try {
      make();
    } catch (err) {
      expect((err as BootConfigError).key).toBe('range_start');
    }
  });

  it('logs a TFTP escape and an HTTP stranger, one line each, with the client', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'bm-bootlog-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(path.join(dir, 'outside'), 'secret');
    const root = path.join(dir, 'root');
    await run('mkdir', ['-p', path.join(root, 'deploy')]);
    await writeFile(path.join(root, 'deploy/vmlinuz'), 'kernel');
    await symlink(path.join(dir, 'outside'), path.join(root, 'escape'));
    const { log, lines } = capture('info');
    const tftp = new TftpServer({ source: new DirectoryFileSource(root), address: '127.0.0.1', port: 0, log });
    const { port: tftpPort } = await tftp.start();
    cleanups.push(() => tftp.close());
    const http = new HttpBootServer({
      states: { bootStateFor: async () => null },
      blobs: new DirectoryBlobSource(root),
      clients: new NetworkGate([parseCidr('127.0.0.0/30')!]),
      plan: {
        httpBase: 'http://127.0.0.1',
        controllerUrl: 'http://127.0.0.1',
        defaultKernel: 'deploy/vmlinuz',
        defaultRamdisk: 'deploy/initrd',
        discovery: false,
        kernelArgs: [],
      },
      address: '0.0.0.0',
      port: 0,
      log,
    });
    const { port: httpPort } = await http.start();
    cleanups.push(() => http.close());
    await run(requirePeer('/usr/bin/tftp'), ['-m', 'binary', '127.0.0.1', String(tftpPort), '-c', 'get', 'escape', path.join(dir, 'got')], {
      timeout: 20_000,
    });
    const { stdout } = await run('curl', [
      '-sS',
      '--interface',
      '127.0.0.9',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `http://127.0.0.1:${httpPort}/images/deploy/vmlinuz`,
    ]);
    expect(stdout).toBe('403');
    const all = lines();
    expect(all.filter((l) => l.msg === 'TFTP path outside the root refused')).toEqual([
      expect.objectContaining({ component: 'tftp', file: 'escape', client: expect.stringMatching(/^127\.0\.0\.1:\d+$/) }),
    ]);
    expect(all.filter((l) => l.msg === 'boot image refused to a non-provisioning address')).toEqual([
      expect.objectContaining({
        component: 'http-boot',
        path: '/images/deploy/vmlinuz',
        rule: 'address in 127.0.0.0/30',
        client: expect.stringContaining('127.0.0.9'),
      }),
    ]);
  });
});
