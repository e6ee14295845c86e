/**
 * Encrypts BMC passwords at rest with AES-256-GCM. Each ciphertext is bound to
 * the row it belongs to (the node uuid as associated data), so a ciphertext
 * copied into another node's row fails to decrypt instead of lending that
 * node someone else's credentials.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { BmError } from '../errors.ts';

const FORMAT_V1 = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID_BYTES = 4;

export class SecretDecryptError extends BmError {
  /** Why, without the framing: "encrypted with a different key (...)". */
  readonly reason: string;
  constructor(reason: string, context: Record<string, string> = {}) {
    super('internal', `stored secret cannot be decrypted: ${reason}`, context);
    this.reason = reason;
  }
}

export class SecretBox {
  readonly #key: Buffer;
  /** A short fingerprint stored with each ciphertext, to tell "wrong key" from "corrupt". */
  readonly keyId: Buffer;

  constructor(key: Uint8Array) {
    if (key.length !== 32) throw new BmError('invalid-argument', `secret key must be 32 bytes, got ${key.length}`);
    this.#key = Buffer.from(key);
    this.keyId = createHash('sha256').update(this.#key).digest().subarray(0, KEY_ID_BYTES);
  }

  encrypt(plaintext: string, boundTo: string): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce);
    cipher.setAAD(Buffer.from(boundTo, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return Buffer.concat([Buffer.from([FORMAT_V1]), this.keyId, nonce, cipher.getAuthTag(), body]);
  }

  decrypt(sealed: Uint8Array, boundTo: string): string {
    const buf = Buffer.from(sealed);
    const header = 1 + KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES;
    if (buf.length < header || buf[0] !== FORMAT_V1) throw new SecretDecryptError('unknown format', { boundTo });
    const keyId = buf.subarray(1, 1 + KEY_ID_BYTES);
    if (!keyId.equals(this.keyId))
      throw new SecretDecryptError('encrypted with a different key (do all controllers share secrets.key_file?)', { boundTo });
    const nonce = buf.subarray(1 + KEY_ID_BYTES, 1 + KEY_ID_BYTES + NONCE_BYTES);
    const tag = buf.subarray(1 + KEY_ID_BYTES + NONCE_BYTES, header);
    const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce);
    decipher.setAAD(Buffer.from(boundTo, 'utf8'));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(buf.subarray(header)), decipher.final()]).toString('utf8');
    } catch {
      throw new SecretDecryptError('authentication failed (tampered, or bound to another node)', { boundTo });
    }
  }
}
