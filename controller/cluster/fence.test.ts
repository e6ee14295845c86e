/**
 * The fence on a hand-driven monotonic clock: fast, no database. The real
 * controller's fence is exercised by test/chaos/fencing.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../boot/log-limiter.ts';
import { Fence, FencedError } from './fence.ts';

function setup(fenceAfterMs = 1000) {
  const clock = { now: 0 };
  const fence = new Fence({ controllerId: 'ctl-a', fenceAfterMs, clock: () => clock.now }, silentLogger);
  return { clock, fence };
}

describe('Fence', () => {
  it('stays open before the first renew (a controller still starting has no row to expire)', () => {
    const { clock, fence } = setup();
    clock.now = 10_000;
    expect(fence.fenced).toBe(false);
    expect(() => fence.check()).not.toThrow();
  });

  it('closes once no renew started within fence_after, without any timer having run', () => {
    const { clock, fence } = setup();
    fence.renewed(fence.renewStarted());
    clock.now = 999;
    expect(fence.fenced).toBe(false);
    const signal = fence.signal;
    clock.now = 1000;
    expect(() => fence.check()).toThrow(FencedError);
    expect(() => fence.check()).toThrow(/controller fenced: cannot reach the database since \d{4}-\d\d-\d\dT/);
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBeInstanceOf(FencedError);
  });

  it('measures from the start of the renew, not its answer: a slow renew buys no extra time', () => {
    const { clock, fence } = setup();
    fence.renewed(fence.renewStarted());
    clock.now = 500;
    const started = fence.renewStarted();
    clock.now = 1400; // the answer came 900 ms later
    fence.renewed(started);
    expect(fence.deadline).toBe(1500);
    clock.now = 1500;
    expect(fence.fenced).toBe(true);
  });

  it('opens again on a renew, with a fresh signal, and tells its listeners both ways', () => {
    const { clock, fence } = setup();
    const heard: string[] = [];
    fence.onFenced(() => heard.push('fenced'));
    fence.onUnfenced(() => heard.push('unfenced'));
    fence.renewed(fence.renewStarted());
    const before = fence.signal;
    clock.now = 5000;
    expect(fence.fenced).toBe(true);
    fence.renewed(fence.renewStarted());
    expect(fence.fenced).toBe(false);
    expect(before.aborted).toBe(true);
    expect(fence.signal.aborted).toBe(false);
    expect(heard).toEqual(['fenced', 'unfenced']);
  });

  it('ignores a renew that started before the last one that counted (an answer that arrives late)', () => {
    const { clock, fence } = setup();
    fence.renewed(fence.renewStarted());
    const old = fence.renewStarted();
    clock.now = 800;
    fence.renewed(fence.renewStarted());
    fence.renewed(old);
    expect(fence.deadline).toBe(1800);
  });
});
