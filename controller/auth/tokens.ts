/**
 * Bearer tokens are compared by their sha256 digest, so config files and
 * databases hold only digests. Tokens are random 32-byte strings, which makes
 * a plain (unsalted) digest sufficient: there is no dictionary to attack.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export function hashToken(token: string): string {
  return `sha256:${createHash('sha256').update(token, 'utf8').digest('hex')}`;
}

export function newToken(): string {
  return `bm_${randomBytes(32).toString('base64url')}`;
}

export class TokenSet {
  readonly #digests: readonly Buffer[];

  constructor(hashes: readonly string[]) {
    this.#digests = hashes.map((h) => Buffer.from(h.replace(/^sha256:/, ''), 'hex'));
  }

  get size(): number {
    return this.#digests.length;
  }

  /** Constant-time against each digest, and checks them all, so timing says nothing. */
  verify(token: string): boolean {
    const digest = createHash('sha256').update(token, 'utf8').digest();
    let ok = false;
    for (const candidate of this.#digests) ok = timingSafeEqual(candidate, digest) || ok;
    return ok;
  }
}
