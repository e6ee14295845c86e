/**
 * The datagram: RMCP header (ASF/DMTF, IPMI v2.0 section 13.1.3), then an
 * IPMI v1.5 session header (section 13.6, only used here without
 * authentication, for Get Channel Authentication Capabilities) or an IPMI
 * v2.0/RMCP+ session header (section 13.6, Table 13-8) with its optional
 * integrity trailer. Encoding and decoding are pure; keys are passed in.
 */
import { decryptPayload, encryptPayload, integrityCode, sameBytes, type SessionKeys } from './crypto.ts';
import { IpmiDecodeError } from './errors.ts';

export const PAYLOAD_IPMI = 0x00;
export const PAYLOAD_OPEN_SESSION_REQUEST = 0x10;
export const PAYLOAD_OPEN_SESSION_RESPONSE = 0x11;
export const PAYLOAD_RAKP1 = 0x12;
export const PAYLOAD_RAKP2 = 0x13;
export const PAYLOAD_RAKP3 = 0x14;
export const PAYLOAD_RAKP4 = 0x15;

const RMCP_VERSION = 0x06;
/** Sequence 0xFF: "no RMCP ACK" (section 13.1.3); IPMI messages never ask for one. */
const RMCP_SEQ_NO_ACK = 0xff;
const RMCP_CLASS_IPMI = 0x07;
const AUTH_NONE = 0x00;
const AUTH_RMCP_PLUS = 0x06;
const NEXT_HEADER = 0x07;

/** An IPMI v1.5 packet without authentication. */
export interface V15Packet {
  readonly format: 'v1.5';
  readonly sessionId: number;
  readonly sequence: number;
  readonly message: Uint8Array;
}

/** An RMCP+ packet whose integrity has not been checked yet: see openPayload. */
export interface V20Envelope {
  readonly format: 'v2.0';
  readonly payloadType: number;
  readonly encrypted: boolean;
  readonly authenticated: boolean;
  readonly sessionId: number;
  readonly sequence: number;
  /** As on the wire (still encrypted when `encrypted`). */
  readonly rawPayload: Uint8Array;
  /** AuthType through Next Header: what the AuthCode covers. */
  readonly covered: Uint8Array;
  readonly authCode: Uint8Array;
}

export type Envelope = V15Packet | V20Envelope;

function rmcpHeader(out: Uint8Array): void {
  out[0] = RMCP_VERSION;
  out[1] = 0;
  out[2] = RMCP_SEQ_NO_ACK;
  out[3] = RMCP_CLASS_IPMI;
}

export function encodeV15(message: Uint8Array, sessionId = 0, sequence = 0): Uint8Array {
  const out = new Uint8Array(4 + 10 + message.length);
  rmcpHeader(out);
  const view = new DataView(out.buffer);
  out[4] = AUTH_NONE;
  view.setUint32(5, sequence >>> 0, true);
  view.setUint32(9, sessionId >>> 0, true);
  out[13] = message.length;
  out.set(message, 14);
  return out;
}

export interface V20Outgoing {
  readonly payloadType: number;
  readonly sessionId: number;
  readonly sequence: number;
  readonly payload: Uint8Array;
  /** With keys the payload is encrypted and the packet signed (both are always on for suites 3 and 17). */
  readonly keys?: SessionKeys | null;
  /** Fixed IV for byte-vector tests. */
  readonly iv?: Uint8Array;
}

export function encodeV20(p: V20Outgoing): Uint8Array {
  const keys = p.keys ?? null;
  const body = keys ? encryptPayload(keys.aesKey, p.payload, p.iv) : p.payload;
  if (body.length > 0xffff) throw new RangeError('payload too long');
  const headerLength = 12;
  // Integrity pad: AuthType..NextHeader must be a multiple of 4 bytes (section 13.28.4).
  const padLength = keys ? (4 - ((headerLength + body.length + 2) % 4)) % 4 : 0;
  const coveredLength = headerLength + body.length + (keys ? padLength + 2 : 0);
  const out = new Uint8Array(4 + coveredLength + (keys ? keys.suite.integrityLength : 0));
  rmcpHeader(out);
  const view = new DataView(out.buffer);
  out[4] = AUTH_RMCP_PLUS;
  out[5] = (p.payloadType & 0x3f) | (keys ? 0xc0 : 0);
  view.setUint32(6, p.sessionId >>> 0, true);
  view.setUint32(10, p.sequence >>> 0, true);
  view.setUint16(14, body.length, true);
  out.set(body, 16);
  if (keys) {
    let at = 16 + body.length;
    out.fill(0xff, at, at + padLength);
    at += padLength;
    out[at++] = padLength;
    out[at++] = NEXT_HEADER;
    out.set(integrityCode(keys, out.subarray(4, at)), at);
  }
  return out;
}

/**
 * The session ID a datagram claims, read without validating anything else, so
 * a listener can pass over traffic of another session to the same BMC
 * instead of counting it as bad. Null when there is no session header.
 */
export function peekSessionId(datagram: Uint8Array): number | null {
  if (datagram.length < 14 || datagram[0] !== RMCP_VERSION || datagram[3] !== RMCP_CLASS_IPMI) return null;
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  if (datagram[4] === AUTH_RMCP_PLUS) return view.getUint32(6, true);
  if (datagram[4] === AUTH_NONE) return view.getUint32(9, true);
  return null;
}

/** Parses the headers. Throws IpmiDecodeError; checks no signature (the caller picks the keys by session ID). */
export function decodeEnvelope(datagram: Uint8Array, integrityLength: (sessionId: number) => number): Envelope {
  if (datagram.length < 4) throw new IpmiDecodeError('truncated', 'shorter than an RMCP header');
  if (datagram[0] !== RMCP_VERSION || datagram[3] !== RMCP_CLASS_IPMI)
    throw new IpmiDecodeError('not-rmcp', 'not an RMCP IPMI-class message');
  if (datagram.length < 5) throw new IpmiDecodeError('truncated', 'no session header');
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  const authType = datagram[4]!;
  if (authType === AUTH_NONE) {
    if (datagram.length < 14) throw new IpmiDecodeError('truncated', 'IPMI v1.5 session header cut short');
    const length = datagram[13]!;
    // One legacy pad byte may follow the message (section 13.6, note on lengths 56, 84...).
    if (datagram.length < 14 + length || datagram.length > 15 + length)
      throw new IpmiDecodeError('length', `IPMI v1.5 message length ${length} does not match the ${datagram.length - 14} bytes present`);
    return {
      format: 'v1.5',
      sequence: view.getUint32(5, true),
      sessionId: view.getUint32(9, true),
      message: datagram.subarray(14, 14 + length),
    };
  }
  if (authType !== AUTH_RMCP_PLUS)
    throw new IpmiDecodeError('auth-type', `session auth type ${authType} is not supported (only none and RMCP+)`);
  if (datagram.length < 16) throw new IpmiDecodeError('truncated', 'RMCP+ session header cut short');
  const typeByte = datagram[5]!;
  const payloadType = typeByte & 0x3f;
  if (payloadType === 0x02) throw new IpmiDecodeError('unsupported', 'OEM payloads are not supported');
  const encrypted = (typeByte & 0x80) !== 0;
  const authenticated = (typeByte & 0x40) !== 0;
  const sessionId = view.getUint32(6, true);
  const sequence = view.getUint32(10, true);
  const length = view.getUint16(14, true);
  const payloadEnd = 16 + length;
  if (datagram.length < payloadEnd)
    throw new IpmiDecodeError('truncated', `payload length ${length} exceeds the ${datagram.length - 16} bytes present`);
  const rawPayload = datagram.subarray(16, payloadEnd);
  if (!authenticated) {
    if (datagram.length !== payloadEnd) throw new IpmiDecodeError('length', 'unauthenticated packet has trailing bytes');
    return {
      format: 'v2.0',
      payloadType,
      encrypted,
      authenticated,
      sessionId,
      sequence,
      rawPayload,
      covered: datagram.subarray(4, payloadEnd),
      authCode: new Uint8Array(0),
    };
  }
  const codeLength = integrityLength(sessionId);
  const trailerStart = datagram.length - codeLength;
  if (codeLength <= 0 || trailerStart < payloadEnd + 2) throw new IpmiDecodeError('truncated', 'integrity trailer cut short');
  const padLength = datagram[trailerStart - 2]!;
  if (datagram[trailerStart - 1] !== NEXT_HEADER || payloadEnd + padLength !== trailerStart - 2 || padLength > 3) {
    throw new IpmiDecodeError('length', 'integrity pad and next header do not fit the payload length');
  }
  return {
    format: 'v2.0',
    payloadType,
    encrypted,
    authenticated,
    sessionId,
    sequence,
    rawPayload,
    covered: datagram.subarray(4, trailerStart),
    authCode: datagram.subarray(trailerStart),
  };
}

/**
 * Checks the AuthCode and decrypts. A session with keys accepts only packets
 * that are both signed and encrypted: suites 3 and 17 negotiate both, and a
 * downgrade to plain text would be an attack.
 */
export function openPayload(envelope: V20Envelope, keys: SessionKeys | null): Uint8Array {
  if (!keys) {
    if (envelope.authenticated || envelope.encrypted)
      throw new IpmiDecodeError('integrity', 'signed or encrypted packet outside a session');
    return envelope.rawPayload;
  }
  if (!envelope.authenticated || !envelope.encrypted)
    throw new IpmiDecodeError('integrity', 'packet in an RMCP+ session is not signed and encrypted');
  if (!sameBytes(integrityCode(keys, envelope.covered), envelope.authCode))
    throw new IpmiDecodeError('integrity', 'AuthCode does not match');
  return decryptPayload(keys.aesKey, envelope.rawPayload);
}
