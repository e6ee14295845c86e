import { describe, expect, it } from 'vitest';
import { LogLimiter } from './log-limiter.ts';

describe('log limiter', () => {
  it('lets a few lines of a kind through per interval and reports the dropped ones with the next', () => {
    let now = 0;
    const limiter = new LogLimiter(2, 1000, () => now);
    expect(limiter.admit('a')).toEqual({ suppressed: 0 });
    expect(limiter.admit('a')).toEqual({ suppressed: 0 });
    expect(limiter.admit('a')).toBeNull();
    expect(limiter.admit('a')).toBeNull();
    // Kinds are limited apart.
    expect(limiter.admit('b')).toEqual({ suppressed: 0 });
    now = 1000;
    expect(limiter.admit('a')).toEqual({ suppressed: 2 });
    expect(limiter.admit('a')).toEqual({ suppressed: 0 });
  });
});
