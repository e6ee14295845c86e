import { describe, expect, it } from 'vitest';
import { type GcHook, YoungGcPacer } from './young-gc.ts';

describe('YoungGcPacer', () => {
  it('asks for one synchronous minor GC per everyBytes received, carrying nothing over past a GC', () => {
    const calls: Parameters<GcHook>[0][] = [];
    const pacer = new YoungGcPacer((options) => calls.push(options), 1000);
    pacer.received(600);
    expect(calls).toEqual([]);
    pacer.received(600);
    expect(calls).toEqual([{ type: 'minor', execution: 'sync' }]);
    // The count restarts at the GC: 1,200 received, one GC, then 999 more are not enough.
    pacer.received(999);
    expect(pacer.runs).toBe(1);
    pacer.received(1);
    expect(pacer.runs).toBe(2);
  });

  it('does nothing without gc() (Node started without --expose-gc)', () => {
    const pacer = new YoungGcPacer(undefined, 1);
    pacer.received(10_000_000);
    expect(pacer.runs).toBe(0);
  });

  it('refuses a pace that is not a positive integer', () => {
    expect(() => new YoungGcPacer(undefined, 0)).toThrow(/positive integer/);
  });
});
