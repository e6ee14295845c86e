import { describe, expect, it } from 'vitest';
import { Admission } from './admission.ts';

function gate(): { promise: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

const ticks = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe('DHCP admission', () => {
  it('runs up to its concurrency, queues the rest, and serves REQUESTs before DISCOVERs', async () => {
    const a = new Admission({ concurrency: 1, maxQueued: 10, targetDelayMs: 100, maxWaitMs: 10_000, now: () => 0 });
    const order: string[] = [];
    const first = gate();
    a.submit(false, async () => {
      await first.promise;
      order.push('d1');
    });
    expect(a.submit(false, async () => void order.push('d2'))).toBe('queued');
    expect(a.submit(false, async () => void order.push('d3'))).toBe('queued');
    expect(a.submit(true, async () => void order.push('r1'))).toBe('queued');
    first.open();
    await ticks(4);
    // Short queue: DISCOVERs first-in first-out, after the REQUEST.
    expect(order).toEqual(['d1', 'r1', 'd2', 'd3']);
  });

  it('serves the newest DISCOVERs first once the oldest waited past the target, and sheds those past maxWait', async () => {
    let now = 0;
    const a = new Admission({ concurrency: 1, maxQueued: 100, targetDelayMs: 100, maxWaitMs: 1000, now: () => now });
    const hold = gate();
    const ran: string[] = [];
    a.submit(false, () => hold.promise);
    a.submit(false, async () => void ran.push('old'));
    now = 950;
    a.submit(false, async () => void ran.push('mid'));
    a.submit(false, async () => void ran.push('new'));
    now = 1060;
    hold.open();
    await ticks(6);
    // 'old' waited 1060 ms (> maxWait): shed. 'mid' waited 110 ms (> target): newest first.
    expect(ran).toEqual(['new', 'mid']);
    expect(a.shed).toBe(1);
  });

  it('makes room in a full queue by shedding its oldest DISCOVER, for DISCOVERs and REQUESTs alike', async () => {
    const a = new Admission({ concurrency: 1, maxQueued: 2, targetDelayMs: 1000, maxWaitMs: 10_000, now: () => 0 });
    const hold = gate();
    const ran: string[] = [];
    a.submit(false, () => hold.promise);
    a.submit(false, async () => void ran.push('d1'));
    a.submit(false, async () => void ran.push('d2'));
    expect(a.submit(false, async () => void ran.push('d3'))).toBe('queued');
    expect(a.submit(true, async () => void ran.push('r1'))).toBe('queued');
    expect(a.shed).toBe(2);
    // Only REQUESTs queued and full: the newcomer is shed.
    expect(a.submit(true, async () => void ran.push('r2'))).toBe('queued');
    expect(a.submit(true, async () => void ran.push('r3'))).toBe('shed');
    hold.open();
    await ticks(6);
    expect(ran).toEqual(['r1', 'r2']);
  });

  it('drains a burst whole when nothing is too old', async () => {
    let now = 0;
    const a = new Admission({ concurrency: 2, maxQueued: 1000, targetDelayMs: 100, maxWaitMs: 3000, now: () => now });
    const ran: number[] = [];
    for (let i = 0; i < 500; i++)
      a.submit(false, async () => {
        ran.push(i);
        now += 2;
      });
    await ticks(600);
    expect(ran).toHaveLength(500);
    expect(new Set(ran).size).toBe(500);
    expect(a.shed).toBe(0);
  });
});
