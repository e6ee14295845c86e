import { describe, expect, it } from 'vitest';
import { StartLimiter } from './start-limiter.ts';

describe('StartLimiter', () => {
  it('runs at most `concurrency` starts at once, in arrival order, and survives failures', async () => {
    const limiter = new StartLimiter(2);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    const results = await Promise.allSettled(
      Array.from({ length: 7 }, (_, i) =>
        limiter.run(async () => {
          order.push(i);
          running++;
          peak = Math.max(peak, running);
          await new Promise((r) => setTimeout(r, 5));
          running--;
          if (i === 3) throw new Error('start failed');
          return i;
        }),
      ),
    );
    expect(peak).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    expect(await limiter.run(async () => 'after')).toBe('after');
  });

  it('refuses a concurrency below one', () => {
    expect(() => new StartLimiter(0)).toThrow(RangeError);
  });
});
