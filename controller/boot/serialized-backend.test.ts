import { describe, expect, it } from 'vitest';
import type { AllocateRequest } from './backend.ts';
import { MemoryBootBackend } from './memory-backend.ts';
import { SerializedAllocations } from './serialized-backend.ts';

describe('serialized allocations', () => {
  it('runs one allocateLease at a time, in order, and keeps going after a failure', async () => {
    const inner = new MemoryBootBackend();
    let running = 0;
    let peak = 0;
    const order: string[] = [];
    const slow = Object.assign(Object.create(inner) as MemoryBootBackend, {
      async allocateLease(req: AllocateRequest): Promise<string | null> {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        order.push(req.mac);
        if (req.mac === 'bad') throw new Error('store down');
        return inner.allocateLease(req);
      },
    });
    const backend = new SerializedAllocations(slow);
    const pool = { start: '10.0.0.1', end: '10.0.0.9', exclude: [] };
    const results = await Promise.allSettled(['a', 'bad', 'b', 'c'].map((mac) => backend.allocateLease({ mac, pool, requestedIp: null, holdMs: 1000 })));
    expect(peak).toBe(1);
    expect(order).toEqual(['a', 'bad', 'b', 'c']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const ips = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(new Set(ips).size).toBe(3);
  });

  it('refuses at once when too many allocations are queued', async () => {
    const backend = new SerializedAllocations(new MemoryBootBackend(), 2);
    const pool = { start: '10.0.0.1', end: '10.0.0.9', exclude: [] };
    const results = await Promise.allSettled(['a', 'b', 'c'].map((mac) => backend.allocateLease({ mac, pool, requestedIp: null, holdMs: 1000 })));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    await expect(backend.allocateLease({ mac: 'd', pool, requestedIp: null, holdMs: 1000 })).resolves.toBe('10.0.0.3');
  });
});
