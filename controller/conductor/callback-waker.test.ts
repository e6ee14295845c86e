import { describe, expect, it } from 'vitest';
import { CallbackWaker, type NodeEvents } from './callback-waker.ts';

/** A subscription the test pushes events into. */
function pushable(): NodeEvents & { push(type: string): void; closed: boolean } {
  const queue: { type: string }[] = [];
  let wake: (() => void) | null = null;
  const sub = {
    closed: false,
    push(type: string) {
      queue.push({ type });
      wake?.();
    },
    close() {
      sub.closed = true;
      wake?.();
    },
    async *[Symbol.asyncIterator]() {
      while (!sub.closed) {
        const next = queue.shift();
        if (next) yield next;
        else await new Promise<void>((r) => (wake = r));
      }
    },
  };
  return sub;
}

describe('CallbackWaker', () => {
  it('wakes a wait as soon as a callback is heard, ignoring other events', async () => {
    const sub = pushable();
    const waker = new CallbackWaker(sub);
    const t0 = performance.now();
    const waited = waker.next(10_000, new AbortController().signal);
    sub.push('provision.changed');
    setTimeout(() => sub.push('agent.called-back'), 20);
    await waited;
    expect(performance.now() - t0).toBeLessThan(5_000);
    waker.close();
    expect(sub.closed).toBe(true);
  });

  it('remembers a callback heard between waits, and otherwise times out', async () => {
    const sub = pushable();
    const waker = new CallbackWaker(sub);
    sub.push('agent.called-back');
    await new Promise((r) => setTimeout(r, 10));
    const t0 = performance.now();
    await waker.next(10_000, new AbortController().signal);
    expect(performance.now() - t0).toBeLessThan(1_000);
    const t1 = performance.now();
    await waker.next(50, new AbortController().signal);
    expect(performance.now() - t1).toBeGreaterThanOrEqual(45);
    waker.close();
  });
});
