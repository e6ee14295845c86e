import { describe, expect, it } from 'vitest';
import { LeaseConflictError } from './errors.ts';
import { MemoryBootBackend } from './memory-backend.ts';

const pool = { start: '10.0.0.10', end: '10.0.0.12', exclude: ['10.0.0.11'] };

describe('in-memory boot backend', () => {
  it('offers the same address to the same MAC, different ones to others, skipping excluded ones', async () => {
    const b = new MemoryBootBackend();
    const a1 = await b.allocateLease({ mac: 'a', pool, requestedIp: null, holdMs: 1000 });
    expect(await b.allocateLease({ mac: 'a', pool, requestedIp: null, holdMs: 1000 })).toBe(a1);
    const b1 = await b.allocateLease({ mac: 'b', pool, requestedIp: a1, holdMs: 1000 });
    expect([a1, b1].sort()).toEqual(['10.0.0.10', '10.0.0.12']);
    expect(await b.allocateLease({ mac: 'c', pool, requestedIp: null, holdMs: 1000 })).toBeNull();
  });

  it('commits atomically: a second MAC on a live lease is a conflict; expiry frees it', async () => {
    let now = 0;
    const b = new MemoryBootBackend(() => now);
    await b.commitLease({ mac: 'a', ip: '10.0.0.10', expiresAt: 100 });
    await expect(b.commitLease({ mac: 'b', ip: '10.0.0.10', expiresAt: 100 })).rejects.toBeInstanceOf(LeaseConflictError);
    now = 101;
    await expect(b.commitLease({ mac: 'b', ip: '10.0.0.10', expiresAt: 200 })).resolves.toMatchObject({ mac: 'b' });
  });

  it('moves a MAC to its new address, releases, and quarantines declined addresses', async () => {
    const b = new MemoryBootBackend();
    await b.commitLease({ mac: 'a', ip: '10.0.0.10', expiresAt: Date.now() + 1e6 });
    await b.commitLease({ mac: 'a', ip: '10.0.0.12', expiresAt: Date.now() + 1e6 });
    expect(b.leases().map((l) => l.ip)).toEqual(['10.0.0.12']);
    await b.releaseLease('a', '10.0.0.12');
    expect(b.leases()).toEqual([]);
    await b.declineLease('x', '10.0.0.10');
    expect(await b.allocateLease({ mac: 'd', pool, requestedIp: '10.0.0.10', holdMs: 1000 })).toBe('10.0.0.12');
  });

  it("gives a NAKed client's next DISCOVER a different address", async () => {
    const b = new MemoryBootBackend();
    const offered = await b.allocateLease({ mac: 'a', pool, requestedIp: null, holdMs: 60_000 });
    // Another client takes it directly (INIT-REBOOT), so a's REQUEST conflicts.
    await b.commitLease({ mac: 'b', ip: offered!, expiresAt: Date.now() + 1e6 });
    await expect(b.commitLease({ mac: 'a', ip: offered!, expiresAt: Date.now() + 1e6 })).rejects.toBeInstanceOf(LeaseConflictError);
    const next = await b.allocateLease({ mac: 'a', pool, requestedIp: null, holdMs: 60_000 });
    expect(next).not.toBeNull();
    expect(next).not.toBe(offered);
  });
});
