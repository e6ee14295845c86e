/**
 * TFTP wire format (RFC 1350) with option extension packets (RFC 2347 OACK).
 * Pure: bytes in, a typed packet out (or MalformedPacketError), and back.
 */
import { MalformedPacketError } from '../errors.ts';

export const Opcode = { rrq: 1, wrq: 2, data: 3, ack: 4, error: 5, oack: 6 } as const;

/** RFC 1350 section 5 and RFC 2347 (code 8). */
export const TftpErrorCode = {
  notDefined: 0,
  fileNotFound: 1,
  accessViolation: 2,
  diskFull: 3,
  illegalOperation: 4,
  unknownTransferId: 5,
  fileExists: 6,
  noSuchUser: 7,
  optionNegotiation: 8,
} as const;

export type TftpOptions = ReadonlyMap<string, string>;

export type TftpPacket =
  | { readonly kind: 'rrq' | 'wrq'; readonly filename: string; readonly mode: string; readonly options: TftpOptions }
  | { readonly kind: 'data'; readonly block: number; readonly data: Uint8Array }
  | { readonly kind: 'ack'; readonly block: number }
  | { readonly kind: 'error'; readonly code: number; readonly message: string }
  | { readonly kind: 'oack'; readonly options: TftpOptions };

const MODES: ReadonlySet<string> = new Set(['octet', 'netascii', 'mail']);
const latin1 = new TextDecoder('latin1');

function malformed(message: string): MalformedPacketError {
  return new MalformedPacketError('tftp', message);
}

/** Splits NUL-terminated strings; the last must be terminated. */
function nulStrings(bytes: Uint8Array, from: number): string[] {
  const out: string[] = [];
  let start = from;
  for (let i = from; i < bytes.length; i++) {
    if (bytes[i] === 0) {
      out.push(latin1.decode(bytes.subarray(start, i)));
      start = i + 1;
    }
  }
  if (start !== bytes.length) throw malformed('string not NUL-terminated');
  return out;
}

function parseOptionPairs(strings: readonly string[]): Map<string, string> {
  if (strings.length % 2 !== 0) throw malformed('option without a value');
  const options = new Map<string, string>();
  for (let i = 0; i < strings.length; i += 2) {
    const name = strings[i]!.toLowerCase();
    if (name.length === 0) throw malformed('empty option name');
    // RFC 2347 leaves duplicates undefined; refusing them keeps negotiation unambiguous.
    if (options.has(name)) throw malformed(`duplicate option ${name}`);
    options.set(name, strings[i + 1]!);
  }
  return options;
}

export function parsePacket(bytes: Uint8Array): TftpPacket {
  if (bytes.length < 4) throw malformed(`${bytes.length} bytes is shorter than any TFTP packet`);
  const opcode = (bytes[0]! << 8) | bytes[1]!;
  switch (opcode) {
    case Opcode.rrq:
    case Opcode.wrq: {
      const strings = nulStrings(bytes, 2);
      if (strings.length < 2) throw malformed('request without filename and mode');
      const filename = strings[0]!;
      const mode = strings[1]!.toLowerCase();
      if (filename.length === 0) throw malformed('empty filename');
      if (!MODES.has(mode)) throw malformed(`unknown mode "${mode.slice(0, 20)}"`);
      return { kind: opcode === Opcode.rrq ? 'rrq' : 'wrq', filename, mode, options: parseOptionPairs(strings.slice(2)) };
    }
    case Opcode.data:
      return { kind: 'data', block: (bytes[2]! << 8) | bytes[3]!, data: bytes.subarray(4) };
    case Opcode.ack:
      if (bytes.length !== 4) throw malformed(`ACK of ${bytes.length} bytes`);
      return { kind: 'ack', block: (bytes[2]! << 8) | bytes[3]! };
    case Opcode.error: {
      const strings = bytes.length === 4 ? [''] : nulStrings(bytes, 4);
      return { kind: 'error', code: (bytes[2]! << 8) | bytes[3]!, message: strings[0] ?? '' };
    }
    case Opcode.oack:
      return { kind: 'oack', options: parseOptionPairs(nulStrings(bytes, 2)) };
    default:
      throw malformed(`unknown opcode ${opcode}`);
  }
}

const encoder = new TextEncoder();

function withStrings(opcode: number, strings: readonly string[]): Uint8Array {
  const parts = strings.map((s) => encoder.encode(s));
  const out = new Uint8Array(2 + parts.reduce((n, p) => n + p.length + 1, 0));
  out[1] = opcode;
  let at = 2;
  for (const p of parts) {
    out.set(p, at);
    at += p.length + 1;
  }
  return out;
}

function optionStrings(options: TftpOptions): string[] {
  return [...options].flatMap(([k, v]) => [k, v]);
}

export function encodeRequest(kind: 'rrq' | 'wrq', filename: string, mode = 'octet', options: TftpOptions = new Map()): Uint8Array {
  return withStrings(kind === 'rrq' ? Opcode.rrq : Opcode.wrq, [filename, mode, ...optionStrings(options)]);
}

export function encodeOack(options: TftpOptions): Uint8Array {
  return withStrings(Opcode.oack, optionStrings(options));
}

export function encodeAck(block: number): Uint8Array {
  return new Uint8Array([0, Opcode.ack, (block >> 8) & 0xff, block & 0xff]);
}

/** opcode, a 16-bit number (block or error code), the payload, and `padding` zero bytes after it. */
function numbered(opcode: number, value: number, payload: Uint8Array, padding = 0): Uint8Array {
  const out = new Uint8Array(4 + payload.length + padding);
  out[1] = opcode;
  out[2] = (value >> 8) & 0xff;
  out[3] = value & 0xff;
  out.set(payload, 4);
  return out;
}

/** An ERROR packet: its message is a NUL-terminated string. */
export function encodeError(code: number, message: string): Uint8Array {
  return numbered(Opcode.error, code, encoder.encode(message), 1);
}

/** A DATA packet (the server's transfers build theirs in reused buffers; this is for clients and tests). */
export function encodeData(block: number, data: Uint8Array): Uint8Array {
  return numbered(Opcode.data, block, data);
}
