/**
 * DHCP option codes (RFC 2132, RFC 4578 for PXE, iPXE's 175) and typed
 * readers/writers for the ones the server uses. Options are kept as raw
 * bytes by code; these helpers interpret them.
 */
export const Opt = {
  pad: 0,
  subnetMask: 1,
  router: 3,
  dns: 6,
  hostname: 12,
  domainName: 15,
  broadcastAddress: 28,
  vendorSpecific: 43,
  requestedIp: 50,
  leaseTime: 51,
  overload: 52,
  messageType: 53,
  serverId: 54,
  parameterList: 55,
  message: 56,
  maxMessageSize: 57,
  renewalTime: 58,
  rebindingTime: 59,
  vendorClass: 60,
  clientId: 61,
  tftpServerName: 66,
  bootFileName: 67,
  userClass: 77,
  clientArch: 93,
  clientNdi: 94,
  clientUuid: 97,
  ipxeEncap: 175,
  end: 255,
} as const;

export const MessageType = {
  discover: 1,
  offer: 2,
  request: 3,
  decline: 4,
  ack: 5,
  nak: 6,
  release: 7,
  inform: 8,
} as const;
export type MessageTypeName = keyof typeof MessageType;

export type DhcpOptions = ReadonlyMap<number, Uint8Array>;

const latin1 = new TextDecoder('latin1');
const encoder = new TextEncoder();

/** Writes a dotted quad (already validated) into `out` at `at`; no intermediate strings or arrays. */
export function writeIp(out: Uint8Array, at: number, ip: string): void {
  let octet = 0;
  let k = at;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      out[k++] = octet;
      octet = 0;
    } else octet = octet * 10 + (c - 48);
  }
  out[k] = octet;
}

export function ipToBytes(ip: string): Uint8Array {
  const out = new Uint8Array(4);
  writeIp(out, 0, ip);
  return out;
}

export function bytesToIp(b: Uint8Array, at = 0): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

export function ipToInt(ip: string): number {
  let value = 0;
  let octet = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      value = value * 256 + octet;
      octet = 0;
    } else octet = octet * 10 + (c - 48);
  }
  return value * 256 + octet;
}

export function intToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function isIpv4(s: string): boolean {
  return /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(s);
}

export function u32(n: number): Uint8Array {
  return new Uint8Array([(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
}

export function ipList(ips: readonly string[]): Uint8Array {
  const out = new Uint8Array(ips.length * 4);
  ips.forEach((ip, i) => out.set(ipToBytes(ip), i * 4));
  return out;
}

export function text(s: string): Uint8Array {
  return encoder.encode(s);
}

export function readText(v: Uint8Array | undefined): string | null {
  return v === undefined ? null : latin1.decode(v);
}

export function readIp(v: Uint8Array | undefined): string | null {
  return v !== undefined && v.length === 4 ? bytesToIp(v) : null;
}

export function readU16(v: Uint8Array | undefined): number | null {
  return v !== undefined && v.length === 2 ? (v[0]! << 8) | v[1]! : null;
}

/** Option 93 (RFC 4578 2.1): a list of 16-bit architecture types. */
export function readClientArchs(v: Uint8Array | undefined): number[] {
  if (v === undefined || v.length === 0 || v.length % 2 !== 0) return [];
  const out: number[] = [];
  for (let i = 0; i < v.length; i += 2) out.push((v[i]! << 8) | v[i + 1]!);
  return out;
}

/** Option 97 (RFC 4578 2.3): type 0 followed by a 16-byte GUID. */
export function readClientUuid(v: Uint8Array | undefined): Uint8Array | null {
  return v !== undefined && v.length === 17 && v[0] === 0 ? v : null;
}

/**
 * Option 77: RFC 3004 says a list of length-prefixed classes, but iPXE sends
 * the bare string "iPXE"; accept both spellings.
 */
export function readUserClasses(v: Uint8Array | undefined): string[] {
  if (v === undefined || v.length === 0) return [];
  const classes: string[] = [];
  let i = 0;
  let wellFormed = true;
  while (i < v.length) {
    const len = v[i]!;
    if (len === 0 || i + 1 + len > v.length) {
      wellFormed = false;
      break;
    }
    classes.push(latin1.decode(v.subarray(i + 1, i + 1 + len)));
    i += 1 + len;
  }
  return wellFormed ? classes : [latin1.decode(v)];
}

/** The architecture names of RFC 4578 / IANA "Processor Architecture Types" we act on. */
export const ClientArch = {
  x86Bios: 0,
  efiIa32: 6,
  efiX64: 7,
  efiBc: 9,
  efiArm64: 11,
  efiX64Http: 16,
} as const;
