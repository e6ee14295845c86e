/**
 * The DHCP servers the DHCP benches run inside a server namespace: ours
 * (test/boot/boot-runner.ts, leases in MySQL through MariaDB's Unix socket,
 * or in memory) and ISC Kea (memfile or MySQL leases, multi-threaded).
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { nsSpawn, waitForLine } from '../boot/netns.ts';
import { requirePeer } from '../boot/peers.ts';

const run = promisify(execFile);
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

export interface BenchSubnet {
  /** The server's address, e.g. 10.98.0.1. */
  readonly server: string;
  /** e.g. 10.98.0.0/16 */
  readonly cidr: string;
  readonly netmask: string;
  readonly start: string;
  readonly end: string;
}

/** Creates Kea's MySQL schema in a new database; returns why not, or null when ready. */
export async function keaMysqlReady(db: string): Promise<string | null> {
  try {
    await run('mysql', ['-uroot', '-h127.0.0.1', '-e', `CREATE DATABASE ${db}`]);
    await run('/usr/sbin/kea-admin', ['db-init', 'mysql', '-u', 'root', '-p', '', '-h', '127.0.0.1', '-n', db]);
    return null;
  } catch (err) {
    return err instanceof Error ? err.message.split('\n').slice(0, 3).join(' ') : String(err);
  }
}

export async function dropKeaDatabase(db: string): Promise<void> {
  await run('mysql', ['-uroot', '-h127.0.0.1', '-e', `DROP DATABASE IF EXISTS ${db}`]).catch(() => undefined);
}

export function keaConfig(subnet: BenchSubnet, leaseDb: Record<string, unknown>): string {
  return JSON.stringify({
    Dhcp4: {
      'interfaces-config': { interfaces: ['eth0'], 'dhcp-socket-type': 'udp' },
      'lease-database': leaseDb,
      'valid-lifetime': 3600,
      subnet4: [{ id: 1, subnet: subnet.cidr, pools: [{ pool: `${subnet.start} - ${subnet.end}` }] }],
      'multi-threading': { 'enable-multi-threading': true, 'thread-pool-size': 2, 'packet-queue-size': 256 },
      loggers: [{ name: 'kea-dhcp4', severity: 'WARN', output_options: [{ output: 'stdout' }] }],
    },
  });
}

/** Starts kea-dhcp4 in `ns` with the config written to `file`; its pid/lock files go to `dir`. */
export async function startKea(ns: string, dir: string, file: string, config: string): Promise<ChildProcess> {
  const kea = requirePeer('/usr/sbin/kea-dhcp4');
  await writeFile(file, config);
  const env = { KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir, KEA_LFC_EXECUTABLE: '/bin/true' };
  const child = nsSpawn(ns, 'env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), kea, '-c', file]);
  await new Promise((r) => setTimeout(r, 1500));
  if (child.exitCode !== null) throw new Error('kea-dhcp4 exited at start');
  return child;
}

/** Starts our DHCP server (full mode, discovery on) in `ns`; leases in the MySQL database `mysqlDb` (schema synced) or in memory. */
export async function startOurs(
  ns: string,
  subnet: BenchSubnet,
  mysqlDb: string | null,
  extra: Record<string, unknown> = {},
): Promise<ChildProcess> {
  const child = nsSpawn(ns, process.execPath, [
    path.join(repo, 'test/boot/boot-runner.ts'),
    JSON.stringify({
      dhcp: {
        mode: 'full',
        serverAddress: subnet.server,
        range: { start: subnet.start, end: subnet.end, netmask: subnet.netmask, router: null, dns: [] },
        discovery: true,
        ...(mysqlDb ? { mysql: { socketPath: '/run/mysqld/mysqld.sock', user: 'root', database: mysqlDb, connectionLimit: 16 } } : {}),
        ...extra,
      },
    }),
  ]);
  await waitForLine(child, /"ready"/);
  return child;
}
