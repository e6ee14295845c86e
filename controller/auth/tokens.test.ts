import { describe, expect, it } from 'vitest';
import { hashToken, newToken, TokenSet } from './tokens.ts';
import { tokenHash } from '../config/schema.ts';

describe('admin tokens', () => {
  it('verifies a configured token by its hash only', () => {
    const token = newToken();
    const set = new TokenSet([hashToken(newToken()), hashToken(token)]);
    expect(set.verify(token)).toBe(true);
    expect(set.verify(token + 'x')).toBe(false);
    expect(set.verify('')).toBe(false);
  });

  it('makes hashes the config schema accepts, and distinct random tokens', () => {
    const a = newToken();
    expect(tokenHash.safeParse(hashToken(a)).success).toBe(true);
    expect(a).not.toBe(newToken());
    expect(hashToken(a)).not.toContain(a);
  });
});
