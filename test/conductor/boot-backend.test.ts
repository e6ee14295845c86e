/** The MySQL BootBackend on a real MariaDB, with two "controllers" (two pools) competing. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { MysqlBootBackend } from '../../controller/conductor/boot-backend.ts';
import { LeaseConflictError } from '../../controller/boot/errors.ts';
import { uniqueDatabaseUrl } from '../../controller/lab/index.ts';

const url = uniqueDatabaseUrl('bm_leases');
let a: DbHandle;
let b: DbHandle;
let clock = Date.parse('2026-11-25T00:00:00Z');
const now = (): number => clock;
const pool = { start: '10.9.0.10', end: '10.9.0.59', exclude: ['10.9.0.20'] };
const mac = (i: number): string => `52:54:00:e0:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;

beforeAll(async () => {
  await syncDatabase(url);
  a = await openDatabase(url, { connectionLimit: 8 });
  b = await openDatabase(url, { connectionLimit: 8 });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await dropDatabase(url);
});

describe('MySQL lease store', () => {
  it('never hands one address to two MACs, however two controllers interleave', async () => {
    const ctlA = new MysqlBootBackend(a.pool, now);
    const ctlB = new MysqlBootBackend(b.pool, now);
    // Offers are per-controller proposals; a client whose REQUEST loses gets a NAK and starts over, as a real one does.
    const results = await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        for (let attempt = 0; attempt < 8; attempt++) {
          const backend = (i + attempt) % 2 ? ctlA : ctlB;
          const ip = await backend.allocateLease({ mac: mac(i), pool, requestedIp: null, holdMs: 5000 });
          if (ip === null) return null;
          try {
            await ((i + attempt) % 3 ? ctlB : ctlA).commitLease({ mac: mac(i), ip, expiresAt: clock + 3600_000 });
            return ip;
          } catch (err) {
            if (!(err instanceof LeaseConflictError)) throw err;
          }
        }
        return 'conflict';
      }),
    );
    const acked = results.filter((r): r is string => r !== null && r !== 'conflict');
    expect(new Set(acked).size).toBe(acked.length);
    expect(acked).not.toContain('10.9.0.20');
    // 50 addresses minus one excluded: 49 can be leased, the rest get nothing.
    expect(acked.length).toBeLessThanOrEqual(49);
    expect(acked.length).toBeGreaterThanOrEqual(45);
    const stored = await ctlA.leases();
    expect(stored.map((l) => l.ip).sort()).toEqual([...acked].sort());
  });

  it('gives concurrent DISCOVERs on one controller distinct offers, without serialising them', async () => {
    const ctl = new MysqlBootBackend(a.pool, now);
    const fresh = { start: '10.9.1.10', end: '10.9.1.49', exclude: [] };
    const offers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => ctl.allocateLease({ mac: mac(1000 + i), pool: fresh, requestedIp: null, holdMs: 5000 })),
    );
    expect(offers).not.toContain(null);
    expect(new Set(offers).size).toBe(40);
    // The pool is exhausted by holds alone: a 41st MAC gets nothing.
    expect(await ctl.allocateLease({ mac: mac(1040), pool: fresh, requestedIp: null, holdMs: 5000 })).toBeNull();
  });

  it('offers a MAC its own lease again, and renews it', async () => {
    const backend = new MysqlBootBackend(a.pool, now);
    const first = (await backend.leases())[0]!;
    expect(await backend.allocateLease({ mac: first.mac, pool, requestedIp: null, holdMs: 5000 })).toBe(first.ip);
    await backend.commitLease({ mac: first.mac, ip: first.ip, expiresAt: clock + 7200_000 });
    expect((await backend.leases()).find((l) => l.mac === first.mac)?.expiresAt).toBe(clock + 7200_000);
  });

  it('refuses to commit an address another MAC holds', async () => {
    const backend = new MysqlBootBackend(a.pool, now);
    const held = (await backend.leases())[0]!;
    await expect(backend.commitLease({ mac: '52:54:00:ee:ee:ee', ip: held.ip, expiresAt: clock + 1000 })).rejects.toThrow(
      LeaseConflictError,
    );
    await expect(backend.commitLease({ mac: '52:54:00:ee:ee:ee', ip: held.ip, expiresAt: clock + 1000 })).rejects.toThrow(held.mac);
  });

  it('makes released and expired addresses available again, and quarantines declined ones', async () => {
    const backend = new MysqlBootBackend(a.pool, now);
    // The race above may leave a few addresses free (clients that lost 8 times in a row): lease them out.
    for (let i = 0; i < 10; i++) {
      const ip = await backend.allocateLease({ mac: mac(500 + i), pool, requestedIp: null, holdMs: 5000 });
      if (ip === null) break;
      await backend.commitLease({ mac: mac(500 + i), ip, expiresAt: clock + 3600_000 });
    }
    const leases = await backend.leases();
    expect(leases).toHaveLength(49);
    expect(await backend.allocateLease({ mac: '52:54:00:ee:00:01', pool, requestedIp: null, holdMs: 5000 })).toBeNull();
    await backend.releaseLease(leases[0]!.mac, leases[0]!.ip);
    expect(await backend.allocateLease({ mac: '52:54:00:ee:00:01', pool, requestedIp: null, holdMs: 5000 })).toBe(leases[0]!.ip);
    await backend.declineLease(leases[1]!.mac, leases[1]!.ip);
    clock += 60_000;
    const reused = await backend.allocateLease({ mac: '52:54:00:ee:00:02', pool, requestedIp: leases[1]!.ip, holdMs: 5000 });
    expect(reused).not.toBe(leases[1]!.ip);
    expect(reused).not.toBeNull();
  });

  it('finds enrolled ports by MAC with their fixed address', async () => {
    const backend = new MysqlBootBackend(a.pool, now);
    await a.pool.query(
      "INSERT INTO nodes (uuid, cpus, memory_mb, local_gb, cpu_arch, pm_address, pm_user, properties) VALUES ('01a210ae-0000-7000-8000-000000000001', 1, 1, 1, 'x86_64', 'h', 'u', '{}')",
    );
    await a.pool.query(
      "INSERT INTO ports (uuid, node_uuid, address, fixed_ip) VALUES ('01a210ae-0000-7000-8000-000000000002', '01a210ae-0000-7000-8000-000000000001', '52:54:00:f0:00:01', '10.9.1.5')",
    );
    expect(await backend.lookup('52:54:00:f0:00:01')).toEqual({
      mac: '52:54:00:f0:00:01',
      nodeUuid: '01a210ae-0000-7000-8000-000000000001',
      fixedAddress: '10.9.1.5',
    });
    expect(await backend.lookup('52:54:00:f0:00:02')).toBeNull();
  });
});
