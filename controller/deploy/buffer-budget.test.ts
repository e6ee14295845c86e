import { describe, expect, it } from 'vitest';
import { BufferBudget } from './buffer-budget.ts';

describe('the shared deploy buffer budget', () => {
  it('makes a request wait until enough bytes come back, first come first served', async () => {
    const budget = new BufferBudget(10);
    await budget.acquire(6);
    const order: string[] = [];
    const big = budget.acquire(8).then(() => order.push('big'));
    const small = budget.acquire(1).then(() => order.push('small'));
    await Promise.resolve();
    expect(order).toEqual([]);
    budget.release(6);
    await Promise.all([big, small]);
    expect(order).toEqual(['big', 'small']);
    expect(budget.usedBytes).toBe(9);
    expect(budget.peakBytes).toBe(9);
  });

  it('grants one request larger than the whole budget when nothing else is held', async () => {
    const budget = new BufferBudget(4);
    await budget.acquire(16);
    expect(budget.usedBytes).toBe(16);
  });

  it('drops an aborted waiter so the next one is served and nothing leaks', async () => {
    const budget = new BufferBudget(4);
    await budget.acquire(4);
    const gone = new AbortController();
    const aborted = budget.acquire(4, gone.signal);
    const next = budget.acquire(2);
    gone.abort(new Error('stream over'));
    await expect(aborted).rejects.toThrow('stream over');
    budget.release(4);
    await next;
    expect(budget.usedBytes).toBe(2);
  });

  it('refuses a budget that is not a positive whole number of bytes', () => {
    expect(() => new BufferBudget(0)).toThrow(RangeError);
    expect(() => new BufferBudget(1.5)).toThrow(RangeError);
  });
});
