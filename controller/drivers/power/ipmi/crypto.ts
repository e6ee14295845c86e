/**
 * RMCP+ cryptography (IPMI v2.0 section 13.28-13.31): the RAKP key-exchange
 * codes, the session integrity key (SIK) and the keys K1 (integrity) and K2
 * (confidentiality) derived from it, the packet integrity codes, and
 * AES-CBC-128 with the IPMI confidentiality pad. Pure functions over bytes.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { IpmiDecodeError } from './errors.ts';

export interface CipherSuite {
  readonly id: number;
  /** Algorithm numbers as the Open Session payloads carry them. */
  readonly authAlg: number;
  readonly integrityAlg: number;
  readonly confidentialityAlg: number;
  readonly hash: 'sha1' | 'sha256';
  /** RAKP 2/3 key-exchange code length: the full HMAC. */
  readonly keyExchangeCodeLength: number;
  /** RAKP 4 and per-packet integrity: HMAC-SHA1-96 or HMAC-SHA256-128. */
  readonly integrityLength: number;
}

/** Suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128 (Table 22-20). */
export const SUITE_3: CipherSuite = {
  id: 3,
  authAlg: 0x01,
  integrityAlg: 0x01,
  confidentialityAlg: 0x01,
  hash: 'sha1',
  keyExchangeCodeLength: 20,
  integrityLength: 12,
};
/** Suite 17: RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128. */
export const SUITE_17: CipherSuite = {
  id: 17,
  authAlg: 0x03,
  integrityAlg: 0x04,
  confidentialityAlg: 0x01,
  hash: 'sha256',
  keyExchangeCodeLength: 32,
  integrityLength: 16,
};

export const SUITES: readonly CipherSuite[] = [SUITE_17, SUITE_3];

export function suiteById(id: number): CipherSuite | undefined {
  return SUITES.find((s) => s.id === id);
}

export function suiteByAlgorithms(auth: number, integrity: number, confidentiality: number): CipherSuite | undefined {
  return SUITES.find((s) => s.authAlg === auth && s.integrityAlg === integrity && s.confidentialityAlg === confidentiality);
}

export function hmac(hash: 'sha1' | 'sha256', key: Uint8Array, ...parts: readonly Uint8Array[]): Uint8Array {
  const h = createHmac(hash, key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function u32le(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0, true);
  return b;
}

const utf8 = new TextEncoder();

/** What both ends of RAKP know once RAKP 2 has been seen (names as in the spec). */
export interface RakpExchange {
  /** SIDm: the remote console's session ID. */
  readonly consoleSessionId: number;
  /** SIDc: the managed system's (BMC's) session ID. */
  readonly bmcSessionId: number;
  /** Rm, Rc: the two 16-byte random numbers. */
  readonly consoleRandom: Uint8Array;
  readonly bmcRandom: Uint8Array;
  /** GUIDc */
  readonly bmcGuid: Uint8Array;
  /** ROLEm: the privilege byte exactly as RAKP 1 carried it (with the lookup bit). */
  readonly role: number;
  readonly username: string;
}

function nameBytes(username: string): Uint8Array {
  const name = utf8.encode(username);
  return new Uint8Array([name.length, ...name]);
}

/** Kuid: the user's password; HMAC zero-pads keys, so the spec's 20-byte padding changes nothing. */
export function userKey(password: string): Uint8Array {
  return utf8.encode(password);
}

/** RAKP 2 key-exchange code: HMAC_Kuid(SIDm, SIDc, Rm, Rc, GUIDc, ROLEm, ULENGTHm, UNAMEm). */
export function rakp2Code(suite: CipherSuite, kuid: Uint8Array, x: RakpExchange): Uint8Array {
  return hmac(
    suite.hash,
    kuid,
    u32le(x.consoleSessionId),
    u32le(x.bmcSessionId),
    x.consoleRandom,
    x.bmcRandom,
    x.bmcGuid,
    new Uint8Array([x.role]),
    nameBytes(x.username),
  );
}

/** RAKP 3 key-exchange code: HMAC_Kuid(Rc, SIDm, ROLEm, ULENGTHm, UNAMEm). */
export function rakp3Code(suite: CipherSuite, kuid: Uint8Array, x: RakpExchange): Uint8Array {
  return hmac(suite.hash, kuid, x.bmcRandom, u32le(x.consoleSessionId), new Uint8Array([x.role]), nameBytes(x.username));
}

/** SIK = HMAC_Kg(Rm, Rc, ROLEm, ULENGTHm, UNAMEm); Kg is Kuid when the BMC has no BMC key set. */
export function sessionIntegrityKey(suite: CipherSuite, kg: Uint8Array, x: RakpExchange): Uint8Array {
  return hmac(suite.hash, kg, x.consoleRandom, x.bmcRandom, new Uint8Array([x.role]), nameBytes(x.username));
}

/** RAKP 4 integrity check value: HMAC_SIK(Rm, SIDc, GUIDc), truncated. */
export function rakp4Icv(suite: CipherSuite, sik: Uint8Array, x: RakpExchange): Uint8Array {
  return hmac(suite.hash, sik, x.consoleRandom, u32le(x.bmcSessionId), x.bmcGuid).subarray(0, suite.integrityLength);
}

export interface SessionKeys {
  readonly suite: CipherSuite;
  readonly k1: Uint8Array;
  /** The first 16 bytes of K2 (section 13.29.2). */
  readonly aesKey: Uint8Array;
}

/** K1 = HMAC_SIK(0x01 x 20), K2 = HMAC_SIK(0x02 x 20): the constants are 20 bytes for both hashes. */
export function deriveKeys(suite: CipherSuite, sik: Uint8Array): SessionKeys {
  const k1 = hmac(suite.hash, sik, new Uint8Array(20).fill(0x01));
  const k2 = hmac(suite.hash, sik, new Uint8Array(20).fill(0x02));
  return { suite, k1, aesKey: k2.subarray(0, 16) };
}

/** The AuthCode trailer of an authenticated packet: HMAC_K1 over AuthType..NextHeader, truncated. */
export function integrityCode(keys: SessionKeys, covered: Uint8Array): Uint8Array {
  return hmac(keys.suite.hash, keys.k1, covered).subarray(0, keys.suite.integrityLength);
}

/**
 * AES-CBC-128 payload (section 13.29): IV, then the ciphertext of the data, a
 * pad of 1, 2, 3... and the pad length, filling a multiple of 16 bytes.
 */
export function encryptPayload(aesKey: Uint8Array, data: Uint8Array, iv: Uint8Array = randomBytes(16)): Uint8Array {
  const padLength = (16 - ((data.length + 1) % 16)) % 16;
  const plain = new Uint8Array(data.length + padLength + 1);
  plain.set(data);
  for (let i = 0; i < padLength; i++) plain[data.length + i] = i + 1;
  plain[plain.length - 1] = padLength;
  const cipher = createCipheriv('aes-128-cbc', aesKey, iv).setAutoPadding(false);
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  const out = new Uint8Array(16 + body.length);
  out.set(iv);
  out.set(body, 16);
  return out;
}

export function decryptPayload(aesKey: Uint8Array, payload: Uint8Array): Uint8Array {
  if (payload.length < 32 || payload.length % 16 !== 0)
    throw new IpmiDecodeError('decrypt', `encrypted payload of ${payload.length} bytes is not IV + whole AES blocks`);
  const decipher = createDecipheriv('aes-128-cbc', aesKey, payload.subarray(0, 16)).setAutoPadding(false);
  const plain = new Uint8Array(Buffer.concat([decipher.update(payload.subarray(16)), decipher.final()]));
  const padLength = plain[plain.length - 1]!;
  if (padLength > 15) throw new IpmiDecodeError('decrypt', `confidentiality pad length ${padLength} exceeds 15`);
  const dataLength = plain.length - 1 - padLength;
  for (let i = 0; i < padLength; i++) {
    if (plain[dataLength + i] !== i + 1) throw new IpmiDecodeError('decrypt', 'confidentiality pad bytes are not 1, 2, 3...');
  }
  return plain.subarray(0, dataLength);
}
