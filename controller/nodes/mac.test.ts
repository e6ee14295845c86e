import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { normalizeMac } from './mac.ts';
import { ValidationError } from '../errors.ts';

describe('normalizeMac', () => {
  it.each([
    ['52:54:00:AB:cd:EF', '52:54:00:ab:cd:ef'],
    ['52-54-00-ab-cd-ef', '52:54:00:ab:cd:ef'],
    ['5254.00ab.cdef', '52:54:00:ab:cd:ef'],
    ['525400ABCDEF', '52:54:00:ab:cd:ef'],
    ['  52:54:00:ab:cd:ef\n', '52:54:00:ab:cd:ef'],
  ])('accepts the spelling %j', (input, expected) => {
    expect(normalizeMac(input)).toBe(expected);
  });

  it.each(['', '52:54:00:ab:cd', '52:54:00:ab:cd:ef:01', '52:54:00:ab:cd:eg', '52:54-00:ab:cd:ef:', 'zz:zz:zz:zz:zz:zz', '5254:00ab:cdef'])(
    'refuses %j naming the field',
    (input) => {
      expect(() => normalizeMac(input, 'mac')).toThrow(ValidationError);
      expect(() => normalizeMac(input, 'mac')).toThrow(/^mac: /);
    },
  );

  it('refuses group addresses and the zero address, which no NIC has', () => {
    expect(() => normalizeMac('ff:ff:ff:ff:ff:ff')).toThrow(/multicast or broadcast/);
    expect(() => normalizeMac('01:00:5e:00:00:01')).toThrow(/multicast/);
    expect(() => normalizeMac('00:00:00:00:00:00')).toThrow(/all-zero/);
  });

  it('keeps error messages short for huge input', () => {
    const err = (() => {
      try {
        normalizeMac('a'.repeat(1_000_000));
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    expect(err?.message.length).toBeLessThan(200);
  });

  it('is idempotent on every unicast MAC', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (bytes) => {
        fc.pre((bytes[0]! & 1) === 0 && bytes.some((b) => b !== 0));
        const text = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
        expect(normalizeMac(text.toUpperCase())).toBe(text);
        expect(normalizeMac(normalizeMac(text))).toBe(text);
      }),
      { numRuns: 2000 },
    );
  });
});
