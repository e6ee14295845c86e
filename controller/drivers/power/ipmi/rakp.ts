/**
 * RMCP+ session establishment payloads (IPMI v2.0 section 13.17-13.23):
 * Open Session Request/Response and RAKP messages 1-4. Pure codecs.
 */
import { IpmiDecodeError } from './errors.ts';

export interface Algorithms {
  readonly auth: number;
  readonly integrity: number;
  readonly confidentiality: number;
}

export interface OpenSessionRequest {
  readonly tag: number;
  /** 0 asks for the highest level the algorithms allow. */
  readonly maxPrivilege: number;
  readonly consoleSessionId: number;
  readonly algorithms: Algorithms;
}

export interface OpenSessionResponse {
  readonly tag: number;
  readonly status: number;
  readonly maxPrivilege: number;
  readonly consoleSessionId: number;
  readonly bmcSessionId: number;
  readonly algorithms: Algorithms | null;
}

export interface Rakp1 {
  readonly tag: number;
  readonly bmcSessionId: number;
  readonly consoleRandom: Uint8Array;
  readonly role: number;
  readonly username: string;
}

export interface Rakp2 {
  readonly tag: number;
  readonly status: number;
  readonly consoleSessionId: number;
  readonly bmcRandom: Uint8Array;
  readonly bmcGuid: Uint8Array;
  readonly keyExchangeCode: Uint8Array;
}

export interface Rakp3 {
  readonly tag: number;
  readonly status: number;
  readonly bmcSessionId: number;
  readonly keyExchangeCode: Uint8Array;
}

export interface Rakp4 {
  readonly tag: number;
  readonly status: number;
  readonly consoleSessionId: number;
  readonly integrityCheck: Uint8Array;
}

/** RMCP+ status codes (Table 13-15) used here. */
export const RAKP_OK = 0x00;
export const RAKP_NO_RESOURCES = 0x01;
export const RAKP_INVALID_SESSION = 0x02;
export const RAKP_INVALID_AUTH_ALG = 0x04;
export const RAKP_INVALID_ROLE = 0x09;
export const RAKP_UNAUTHORIZED_ROLE = 0x0a;
export const RAKP_INVALID_NAME_LENGTH = 0x0c;
export const RAKP_UNAUTHORIZED_NAME = 0x0d;
export const RAKP_INVALID_INTEGRITY = 0x0f;
export const RAKP_NO_CIPHER_SUITE = 0x11;

const utf8 = new TextEncoder();
const utf8d = new TextDecoder('utf-8', { fatal: false });

function u32(bytes: Uint8Array, at: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at, true);
}

function put32(bytes: Uint8Array, at: number, value: number): void {
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(at, value >>> 0, true);
}

function need(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length < length) throw new IpmiDecodeError('truncated', `${what} of ${bytes.length} bytes, expected ${length}`);
}

/** One 8-byte algorithm payload record: type, reserved, length 8, algorithm, reserved. */
function algorithmRecord(out: Uint8Array, at: number, type: number, algorithm: number): void {
  out[at] = type;
  out[at + 3] = 0x08;
  out[at + 4] = algorithm & 0x3f;
}

function readAlgorithms(bytes: Uint8Array, at: number): Algorithms {
  const types = [bytes[at], bytes[at + 8], bytes[at + 16]];
  if (types[0] !== 0 || types[1] !== 1 || types[2] !== 2)
    throw new IpmiDecodeError('payload', 'algorithm records are not auth, integrity, confidentiality');
  return { auth: bytes[at + 4]! & 0x3f, integrity: bytes[at + 12]! & 0x3f, confidentiality: bytes[at + 20]! & 0x3f };
}

function writeAlgorithms(out: Uint8Array, at: number, algorithms: Algorithms): void {
  algorithmRecord(out, at, 0, algorithms.auth);
  algorithmRecord(out, at + 8, 1, algorithms.integrity);
  algorithmRecord(out, at + 16, 2, algorithms.confidentiality);
}

export function encodeOpenSessionRequest(m: OpenSessionRequest): Uint8Array {
  const out = new Uint8Array(32);
  out[0] = m.tag;
  out[1] = m.maxPrivilege & 0x0f;
  put32(out, 4, m.consoleSessionId);
  writeAlgorithms(out, 8, m.algorithms);
  return out;
}

export function decodeOpenSessionRequest(b: Uint8Array): OpenSessionRequest {
  need(b, 32, 'Open Session Request');
  return { tag: b[0]!, maxPrivilege: b[1]! & 0x0f, consoleSessionId: u32(b, 4), algorithms: readAlgorithms(b, 8) };
}

export function encodeOpenSessionResponse(m: OpenSessionResponse): Uint8Array {
  const out = new Uint8Array(m.status === RAKP_OK && m.algorithms ? 36 : 8);
  out[0] = m.tag;
  out[1] = m.status;
  out[2] = m.maxPrivilege;
  put32(out, 4, m.consoleSessionId);
  if (out.length === 36 && m.algorithms) {
    put32(out, 8, m.bmcSessionId);
    writeAlgorithms(out, 12, m.algorithms);
  }
  return out;
}

export function decodeOpenSessionResponse(b: Uint8Array): OpenSessionResponse {
  need(b, 8, 'Open Session Response');
  const status = b[1]!;
  if (status !== RAKP_OK)
    return { tag: b[0]!, status, maxPrivilege: b[2]!, consoleSessionId: u32(b, 4), bmcSessionId: 0, algorithms: null };
  need(b, 36, 'Open Session Response');
  return {
    tag: b[0]!,
    status,
    maxPrivilege: b[2]!,
    consoleSessionId: u32(b, 4),
    bmcSessionId: u32(b, 8),
    algorithms: readAlgorithms(b, 12),
  };
}

export function encodeRakp1(m: Rakp1): Uint8Array {
  const name = utf8.encode(m.username);
  if (name.length > 16) throw new RangeError('IPMI user names are at most 16 bytes');
  const out = new Uint8Array(28 + name.length);
  out[0] = m.tag;
  put32(out, 4, m.bmcSessionId);
  out.set(m.consoleRandom.subarray(0, 16), 8);
  out[24] = m.role;
  out[27] = name.length;
  out.set(name, 28);
  return out;
}

export function decodeRakp1(b: Uint8Array): Rakp1 {
  need(b, 28, 'RAKP 1');
  const nameLength = b[27]!;
  if (nameLength > 16 || b.length !== 28 + nameLength)
    throw new IpmiDecodeError('length', `RAKP 1 user name length ${nameLength} does not fit`);
  return { tag: b[0]!, bmcSessionId: u32(b, 4), consoleRandom: b.slice(8, 24), role: b[24]!, username: utf8d.decode(b.subarray(28)) };
}

export function encodeRakp2(m: Rakp2): Uint8Array {
  const out = new Uint8Array(m.status === RAKP_OK ? 40 + m.keyExchangeCode.length : 8);
  out[0] = m.tag;
  out[1] = m.status;
  put32(out, 4, m.consoleSessionId);
  if (m.status === RAKP_OK) {
    out.set(m.bmcRandom, 8);
    out.set(m.bmcGuid, 24);
    out.set(m.keyExchangeCode, 40);
  }
  return out;
}

export function decodeRakp2(b: Uint8Array): Rakp2 {
  need(b, 8, 'RAKP 2');
  const status = b[1]!;
  const empty = new Uint8Array(0);
  if (status !== RAKP_OK)
    return { tag: b[0]!, status, consoleSessionId: u32(b, 4), bmcRandom: empty, bmcGuid: empty, keyExchangeCode: empty };
  need(b, 40, 'RAKP 2');
  return {
    tag: b[0]!,
    status,
    consoleSessionId: u32(b, 4),
    bmcRandom: b.slice(8, 24),
    bmcGuid: b.slice(24, 40),
    keyExchangeCode: b.slice(40),
  };
}

function encodeStatusAndCode(tag: number, status: number, sessionId: number, code: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + code.length);
  out[0] = tag;
  out[1] = status;
  put32(out, 4, sessionId);
  out.set(code, 8);
  return out;
}

export function encodeRakp3(m: Rakp3): Uint8Array {
  return encodeStatusAndCode(m.tag, m.status, m.bmcSessionId, m.keyExchangeCode);
}

export function decodeRakp3(b: Uint8Array): Rakp3 {
  need(b, 8, 'RAKP 3');
  return { tag: b[0]!, status: b[1]!, bmcSessionId: u32(b, 4), keyExchangeCode: b.slice(8) };
}

export function encodeRakp4(m: Rakp4): Uint8Array {
  return encodeStatusAndCode(m.tag, m.status, m.consoleSessionId, m.status === RAKP_OK ? m.integrityCheck : new Uint8Array(0));
}

export function decodeRakp4(b: Uint8Array): Rakp4 {
  need(b, 8, 'RAKP 4');
  return { tag: b[0]!, status: b[1]!, consoleSessionId: u32(b, 4), integrityCheck: b.slice(8) };
}

export function rakpStatusText(status: number): string {
  const names: Readonly<Record<number, string>> = {
    0x01: 'insufficient resources to create a session',
    0x02: 'invalid session ID',
    0x04: 'invalid authentication algorithm',
    0x05: 'invalid integrity algorithm',
    0x09: 'invalid role',
    0x0a: 'unauthorized role or privilege level',
    0x0c: 'invalid name length',
    0x0d: 'unauthorized name',
    0x0f: 'invalid integrity check value',
    0x10: 'invalid confidentiality algorithm',
    0x11: 'no cipher suite match',
  };
  return `${names[status] ?? 'RMCP+ status'} (0x${status.toString(16).padStart(2, '0')})`;
}
