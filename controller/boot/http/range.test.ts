import { describe, expect, it } from 'vitest';
import { parseRange } from './range.ts';

describe('Range header', () => {
  it('reads closed, open and suffix ranges, clamped to the size', () => {
    expect(parseRange('bytes=0-99', 1000)).toEqual({ kind: 'range', start: 0, end: 99 });
    expect(parseRange('bytes=900-', 1000)).toEqual({ kind: 'range', start: 900, end: 999 });
    expect(parseRange('bytes=-10', 1000)).toEqual({ kind: 'range', start: 990, end: 999 });
    expect(parseRange('bytes=-5000', 1000)).toEqual({ kind: 'range', start: 0, end: 999 });
    expect(parseRange('bytes=990-5000', 1000)).toEqual({ kind: 'range', start: 990, end: 999 });
  });
  it('answers unsatisfiable ranges, and ignores malformed or multiple ranges', () => {
    expect(parseRange('bytes=1000-', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=5-2', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=-0', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange(undefined, 1000)).toEqual({ kind: 'none' });
    expect(parseRange('bytes=0-1,5-6', 1000)).toEqual({ kind: 'none' });
    expect(parseRange('items=0-1', 1000)).toEqual({ kind: 'none' });
    expect(parseRange('bytes=-', 1000)).toEqual({ kind: 'none' });
  });
});
