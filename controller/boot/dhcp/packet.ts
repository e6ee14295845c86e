/**
 * The DHCP message (RFC 2131 section 2, the BOOTP layout) with the options
 * area of RFC 2132: pure parse and encode over Uint8Array. Option overload
 * (52) is not supported: such packets keep sname/file as plain fields.
 * Repeated options are concatenated (RFC 3396).
 */
import { MalformedPacketError } from '../errors.ts';
import { bytesToIp, Opt, writeIp, type DhcpOptions } from './options.ts';

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
const MAGIC = [99, 130, 83, 99] as const;
const HEADER = 236;
/** RFC 2131: the smallest reply a BOOTP relay must accept (and some clients need). */
const MIN_REPLY = 300;
export const BROADCAST_FLAG = 0x8000;

export interface DhcpPacket {
  readonly op: number;
  readonly htype: number;
  readonly hlen: number;
  readonly hops: number;
  readonly xid: number;
  readonly secs: number;
  readonly flags: number;
  readonly ciaddr: string;
  readonly yiaddr: string;
  readonly siaddr: string;
  readonly giaddr: string;
  /** The client hardware address, `hlen` bytes. */
  readonly chaddr: Uint8Array;
  readonly sname: string;
  readonly file: string;
  readonly options: DhcpOptions;
}

const latin1 = new TextDecoder('latin1');

function malformed(message: string): MalformedPacketError {
  return new MalformedPacketError('dhcp', message);
}

function cString(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return latin1.decode(nul === -1 ? b : b.subarray(0, nul));
}

export function parseOptions(bytes: Uint8Array, start: number): Map<number, Uint8Array> {
  const options = new Map<number, Uint8Array>();
  let i = start;
  while (i < bytes.length) {
    const code = bytes[i]!;
    if (code === Opt.end) return options;
    if (code === Opt.pad) {
      i++;
      continue;
    }
    if (i + 1 >= bytes.length) throw malformed(`option ${code} has no length byte`);
    const len = bytes[i + 1]!;
    if (i + 2 + len > bytes.length) throw malformed(`option ${code} of length ${len} runs past the end`);
    const value = bytes.subarray(i + 2, i + 2 + len);
    const seen = options.get(code);
    if (seen) {
      const joined = new Uint8Array(seen.length + value.length);
      joined.set(seen);
      joined.set(value, seen.length);
      options.set(code, joined);
    } else options.set(code, value);
    i += 2 + len;
  }
  // Many clients pad to a fixed size and a few forget the end option; what was read is whole.
  return options;
}

export function parseDhcp(bytes: Uint8Array): DhcpPacket {
  if (bytes.length < HEADER + 4) throw malformed(`${bytes.length} bytes is shorter than a DHCP message`);
  if (bytes.length > 65507) throw malformed('oversize');
  for (let k = 0; k < 4; k++) if (bytes[HEADER + k] !== MAGIC[k]) throw malformed('no DHCP magic cookie');
  const op = bytes[0]!;
  if (op !== BOOTREQUEST && op !== BOOTREPLY) throw malformed(`op ${op}`);
  const hlen = bytes[2]!;
  if (hlen === 0 || hlen > 16) throw malformed(`hardware address length ${hlen}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const options = parseOptions(bytes, HEADER + 4);
  const type = options.get(Opt.messageType);
  if (type === undefined || type.length !== 1 || type[0]! < 1 || type[0]! > 8) throw malformed('missing or bad message type (option 53)');
  return {
    op,
    htype: bytes[1]!,
    hlen,
    hops: bytes[3]!,
    xid: view.getUint32(4),
    secs: view.getUint16(8),
    flags: view.getUint16(10),
    ciaddr: bytesToIp(bytes, 12),
    yiaddr: bytesToIp(bytes, 16),
    siaddr: bytesToIp(bytes, 20),
    giaddr: bytesToIp(bytes, 24),
    chaddr: bytes.slice(28, 28 + hlen),
    sname: cString(bytes.subarray(44, 108)),
    file: cString(bytes.subarray(108, 236)),
    options,
  };
}

export interface DhcpReplyFields {
  readonly op: number;
  readonly xid: number;
  readonly flags: number;
  readonly hops?: number;
  readonly secs?: number;
  readonly htype?: number;
  readonly ciaddr?: string;
  readonly yiaddr?: string;
  readonly siaddr?: string;
  readonly giaddr?: string;
  readonly chaddr: Uint8Array;
  readonly sname?: string;
  readonly file?: string;
  /** Encoded in the given order; values over 255 bytes are split (RFC 3396). */
  readonly options: readonly (readonly [number, Uint8Array])[];
}

const encoder = new TextEncoder();

export function encodeDhcp(f: DhcpReplyFields): Uint8Array {
  let optionBytes = 4 + 1;
  for (const [, v] of f.options) optionBytes += Math.max(1, Math.ceil(v.length / 255)) * 2 + v.length;
  const out = new Uint8Array(Math.max(MIN_REPLY, HEADER + optionBytes));
  const view = new DataView(out.buffer);
  out[0] = f.op;
  out[1] = f.htype ?? 1;
  out[2] = f.chaddr.length;
  out[3] = f.hops ?? 0;
  view.setUint32(4, f.xid);
  view.setUint16(8, f.secs ?? 0);
  view.setUint16(10, f.flags);
  if (f.ciaddr) writeIp(out, 12, f.ciaddr);
  if (f.yiaddr) writeIp(out, 16, f.yiaddr);
  if (f.siaddr) writeIp(out, 20, f.siaddr);
  if (f.giaddr) writeIp(out, 24, f.giaddr);
  out.set(f.chaddr.length > 16 ? f.chaddr.subarray(0, 16) : f.chaddr, 28);
  if (f.sname) out.set(encoder.encode(f.sname).subarray(0, 63), 44);
  if (f.file) out.set(encoder.encode(f.file).subarray(0, 127), 108);
  out.set(MAGIC, HEADER);
  let i = HEADER + 4;
  for (const [code, value] of f.options) {
    if (value.length <= 255) {
      out[i++] = code;
      out[i++] = value.length;
      out.set(value, i);
      i += value.length;
      continue;
    }
    for (let at = 0; at < value.length; at += 255) {
      const chunk = value.subarray(at, at + 255);
      out[i++] = code;
      out[i++] = chunk.length;
      out.set(chunk, i);
      i += chunk.length;
    }
  }
  out[i] = Opt.end;
  return out;
}

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

export function macOf(packet: DhcpPacket): string {
  let mac = '';
  for (let i = 0; i < packet.chaddr.length; i++) mac += (i === 0 ? '' : ':') + HEX[packet.chaddr[i]!]!;
  return mac;
}
