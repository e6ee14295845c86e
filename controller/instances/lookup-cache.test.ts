import { describe, expect, it } from 'vitest';
import { LookupCache } from './lookup-cache.ts';

function counting<T>(answer: (key: string, n: number) => Promise<T>): { load: (key: string) => Promise<T>; calls: () => number } {
  let n = 0;
  return { load: (key) => answer(key, ++n), calls: () => n };
}

describe('LookupCache', () => {
  it('answers concurrent and later asks within the TTL with one lookup, and looks again after it', async () => {
    let now = 1000;
    const cache = new LookupCache<string>(
      1000,
      () => true,
      16,
      () => now,
    );
    const source = counting(async (key, n) => `${key}#${n}`);
    expect(await Promise.all([cache.get('small', source.load), cache.get('small', source.load)])).toEqual(['small#1', 'small#1']);
    now += 999;
    expect(await cache.get('small', source.load)).toBe('small#1');
    now += 1;
    expect(await cache.get('small', source.load)).toBe('small#2');
    expect(source.calls()).toBe(2);
  });

  it('keeps neither a failed lookup nor a value it is told not to keep', async () => {
    const cache = new LookupCache<{ status: string }>(60_000, (v) => v.status === 'active');
    let fail = true;
    let status = 'queued';
    const source = counting(async () => {
      if (fail) throw new Error('image gone not found');
      return { status };
    });
    await expect(cache.get('img', source.load)).rejects.toThrow('not found');
    fail = false;
    expect((await cache.get('img', source.load)).status).toBe('queued');
    status = 'active';
    expect((await cache.get('img', source.load)).status).toBe('active');
    status = 'deleted';
    expect((await cache.get('img', source.load)).status).toBe('active');
    expect(source.calls()).toBe(3);
  });
});
