/**
 * The PXE storm against the real server with leases in MySQL (issue 15's
 * livelock): clients offered an address already bound to another client were
 * NAKed and offered it again, forever. Pinned twice: at the lease store, with
 * two controllers sharing one database (an address another controller
 * committed since our scan, and a NAKed client's next offer), and end to end:
 * a relay forwarding every PXE client to two controllers, every client leased.
 */
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaseConflictError } from '../../controller/boot/errors.ts';
import { DhcpServer } from '../../controller/boot/dhcp/server.ts';
import { MysqlBootBackend } from '../../controller/conductor/boot-backend.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { uniqueDatabaseUrl, freeUdpPort } from '../../controller/lab/index.ts';
import { runStorm } from './storm-client.ts';

const url = uniqueDatabaseUrl('bm_storm');
const pools: mysql.Pool[] = [];
const openPool = (limit = 8): mysql.Pool => {
  const pool = mysql.createPool({ uri: url, connectionLimit: limit });
  pools.push(pool);
  return pool;
};
const mac = (i: number): string => `52:54:00:5e:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
const HOUR = 3600_000;

beforeAll(async () => {
  await syncDatabase(url);
});

afterAll(async () => {
  for (const p of pools) await p.end();
  await dropDatabase(url);
});

describe('offers under contention (MySQL leases, two controllers)', () => {
  it('never offers an address another controller committed after our scan', async () => {
    const pool = { start: '10.61.0.10', end: '10.61.0.20', exclude: [] };
    const a = new MysqlBootBackend(openPool(2));
    const b = new MysqlBootBackend(openPool(2));
    // A's first offer scans the range and keeps the rest as candidates for a second.
    expect(await a.allocateLease({ mac: mac(1), pool, requestedIp: null, holdMs: 30_000 })).toBe('10.61.0.10');
    // Meanwhile B's client commits the next address (B's own offer, or an INIT-REBOOT).
    await b.commitLease({ mac: mac(2), ip: '10.61.0.11', expiresAt: Date.now() + HOUR });
    const offered = await a.allocateLease({ mac: mac(3), pool, requestedIp: null, holdMs: 30_000 });
    expect(offered).not.toBeNull();
    expect(offered).not.toBe('10.61.0.11');
  });

  it("gives a NAKed client's next DISCOVER a different address", async () => {
    const pool = { start: '10.61.1.10', end: '10.61.1.20', exclude: [] };
    const a = new MysqlBootBackend(openPool(2));
    const b = new MysqlBootBackend(openPool(2));
    const first = await a.allocateLease({ mac: mac(11), pool, requestedIp: null, holdMs: 30_000 });
    // B (which knows nothing of A's in-memory offer) leases the same address to another client.
    await b.commitLease({ mac: mac(12), ip: first!, expiresAt: Date.now() + HOUR });
    await expect(a.commitLease({ mac: mac(11), ip: first!, expiresAt: Date.now() + HOUR })).rejects.toBeInstanceOf(LeaseConflictError);
    const second = await a.allocateLease({ mac: mac(11), pool, requestedIp: null, holdMs: 30_000 });
    expect(second).not.toBeNull();
    expect(second).not.toBe(first);
    await a.commitLease({ mac: mac(11), ip: second!, expiresAt: Date.now() + HOUR });
  });
});

describe('addresses a MAC left', () => {
  it('are offered to others again once the MAC moved to another address', async () => {
    const a = new MysqlBootBackend(openPool(2));
    await a.commitLease({ mac: mac(21), ip: '10.61.2.10', expiresAt: Date.now() + HOUR });
    // The same MAC commits another address (an INIT-REBOOT): its first lease goes.
    await a.commitLease({ mac: mac(21), ip: '10.61.2.11', expiresAt: Date.now() + HOUR });
    const only = { start: '10.61.2.10', end: '10.61.2.10', exclude: [] };
    expect(await a.allocateLease({ mac: mac(22), pool: only, requestedIp: null, holdMs: 30_000 })).toBe('10.61.2.10');
  });
});

describe('PXE storm through a relay to two controllers', () => {
  it('leases every client, each address once, every lease committed in MySQL', async () => {
    const clients = 300;
    // 450 addresses for 300 clients: scanned often, so offers collide, yet roomy
    // enough for both servers' 30 s offer holds (each client is offered twice).
    const range = { start: '10.62.0.10', end: '10.62.1.203', netmask: '255.255.254.0', router: null, dns: [] };
    const servers: DhcpServer[] = [];
    const backends: MysqlBootBackend[] = [];
    // The servers must know the relay's port before the storm binds it.
    const relayPort = await freeUdpPort();
    try {
      const targets = [];
      for (const address of ['127.0.0.2', '127.0.0.3']) {
        const backend = new MysqlBootBackend(openPool(8));
        backends.push(backend);
        const server = new DhcpServer({
          mode: 'full',
          backend,
          serverAddress: address,
          bindAddress: address,
          serverPort: 0,
          relayPort,
          range,
          discovery: true,
          boot: { httpPort: 6386, biosFile: 'undionly.kpxe', efiFile: 'ipxe.efi' },
        });
        servers.push(server);
        const { server: port } = await server.start();
        targets.push({ address, port: port! });
      }
      const result = await runStorm({
        servers: targets,
        relay: { address: '127.0.0.1', port: relayPort },
        clients,
        macPrefix: '52:54:00:5f',
        deadlineMs: 60_000,
      });
      expect(result.unleased, JSON.stringify({ ...result, leases: undefined, stats: servers.map((s) => s.stats) })).toEqual([]);
      expect(result.leased).toBe(clients);
      expect(result.duplicateAddresses).toBe(0);
      const stored = await backends[0]!.leases();
      const mine = new Map(stored.filter((l) => l.mac.startsWith('52:54:00:5f')).map((l) => [l.mac, l.ip]));
      expect(mine.size).toBe(clients);
      for (const l of result.leases) expect(mine.get(l.mac)).toBe(l.ip);
      // A NAK is fine (two servers offer independently); a livelock is thousands.
      expect(result.naks).toBeLessThan(clients);
    } finally {
      for (const s of servers) await s.close();
    }
  }, 90_000);
});
