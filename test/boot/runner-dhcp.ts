/**
 * The DHCP part of boot-runner.ts: our server over the in-memory backend,
 * with the enrolled nodes given in the runner's JSON config.
 */
import mysql from 'mysql2/promise';
import type { BootBackend, BootNode } from '../../controller/boot/backend.ts';
import { MysqlBootBackend } from '../../controller/conductor/boot-backend.ts';
import { DhcpServer, type DhcpMode, type DhcpRange } from '../../controller/boot/dhcp/server.ts';
import { MemoryBootBackend } from '../../controller/boot/memory-backend.ts';

export interface RunnerDhcpConfig {
  readonly mode: DhcpMode;
  readonly serverAddress: string;
  readonly bindAddress?: string;
  readonly range?: DhcpRange;
  readonly discovery: boolean;
  readonly nodes?: readonly BootNode[];
  readonly leaseTimeSec?: number;
  readonly httpPort?: number;
  /**
   * Leases in MySQL (the conductor's MysqlBootBackend) instead of memory.
   * Inside a namespace 127.0.0.1:3306 is not reachable, so this goes through
   * MariaDB's Unix socket; the schema must already be synced.
   */
  readonly mysql?: { readonly socketPath: string; readonly database: string; readonly user: string; readonly connectionLimit?: number };
}

export async function startDhcpFromRunnerConfig(
  c: RunnerDhcpConfig,
): Promise<{ addresses: unknown; backend: BootBackend; close: () => Promise<void>; stats: () => Promise<unknown> }> {
  const memory = new MemoryBootBackend();
  for (const n of c.nodes ?? []) memory.addNode(n);
  const pool = c.mysql
    ? mysql.createPool({
        socketPath: c.mysql.socketPath,
        user: c.mysql.user,
        database: c.mysql.database,
        connectionLimit: c.mysql.connectionLimit ?? 16,
      })
    : null;
  const mysqlBackend = pool ? new MysqlBootBackend(pool) : null;
  const backend: BootBackend = mysqlBackend ?? memory;
  const server = new DhcpServer({
    mode: c.mode,
    backend,
    serverAddress: c.serverAddress,
    ...(c.bindAddress ? { bindAddress: c.bindAddress } : {}),
    ...(c.range ? { range: c.range } : {}),
    discovery: c.discovery,
    leaseTimeSec: c.leaseTimeSec ?? 3600,
    boot: { httpPort: c.httpPort ?? 6386, biosFile: 'undionly.kpxe', efiFile: 'ipxe.efi' },
  });
  const addresses = await server.start();
  return {
    addresses,
    backend,
    close: async () => {
      await server.close();
      await pool?.end();
    },
    stats: async () => {
      const leases = mysqlBackend ? await mysqlBackend.leases() : memory.leases();
      return { ...server.stats, leases: leases.length, leaseList: leases.slice(0, 50) };
    },
  };
}
