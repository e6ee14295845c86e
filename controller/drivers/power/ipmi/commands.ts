/**
 * The IPMI commands the driver and the virtual BMC speak: request bodies and
 * response-data parsers (after the completion code). Pure functions; netFn
 * and command numbers from IPMI v2.0 Appendix G.
 */
import { IpmiDecodeError } from './errors.ts';
import { NETFN_APP, NETFN_CHASSIS } from './message.ts';

export interface CommandId {
  readonly netFn: number;
  readonly command: number;
}

export const GET_DEVICE_ID: CommandId = { netFn: NETFN_APP, command: 0x01 };
export const GET_CHANNEL_AUTH_CAPABILITIES: CommandId = { netFn: NETFN_APP, command: 0x38 };
export const SET_SESSION_PRIVILEGE: CommandId = { netFn: NETFN_APP, command: 0x3b };
export const CLOSE_SESSION: CommandId = { netFn: NETFN_APP, command: 0x3c };
export const GET_CHANNEL_CIPHER_SUITES: CommandId = { netFn: NETFN_APP, command: 0x54 };
export const GET_CHASSIS_STATUS: CommandId = { netFn: NETFN_CHASSIS, command: 0x01 };
export const CHASSIS_CONTROL: CommandId = { netFn: NETFN_CHASSIS, command: 0x02 };
export const SET_BOOT_OPTIONS: CommandId = { netFn: NETFN_CHASSIS, command: 0x08 };
export const GET_BOOT_OPTIONS: CommandId = { netFn: NETFN_CHASSIS, command: 0x09 };

export const PRIVILEGE_USER = 0x02;
export const PRIVILEGE_OPERATOR = 0x03;
export const PRIVILEGE_ADMINISTRATOR = 0x04;

/** Chassis Control actions (section 28.3). */
export const CHASSIS_POWER_DOWN = 0x00;
export const CHASSIS_POWER_UP = 0x01;
export const CHASSIS_POWER_CYCLE = 0x02;
export const CHASSIS_HARD_RESET = 0x03;
export const CHASSIS_SOFT_SHUTDOWN = 0x05;

/** Completion codes (section 5.2) used here. */
export const CC_OK = 0x00;
export const CC_PARAMETER_NOT_SUPPORTED = 0x80;
export const CC_INVALID_COMMAND = 0xc1;
export const CC_REQUEST_LENGTH = 0xc7;
export const CC_OUT_OF_RANGE = 0xc9;
export const CC_INVALID_DATA = 0xcc;
export const CC_INSUFFICIENT_PRIVILEGE = 0xd4;

/** System boot options parameter 5 (section 28.13, Table 28-14). */
export const BOOT_PARAM_FLAGS = 0x05;

function need(data: Uint8Array, length: number, what: string): void {
  if (data.length < length) throw new IpmiDecodeError('truncated', `${what} response of ${data.length} bytes, expected at least ${length}`);
}

/** Bit 7 of the channel byte asks for the IPMI v2.0 extended data; channel 0xE is "this channel". */
export function authCapabilitiesRequest(privilege: number): Uint8Array {
  return new Uint8Array([0x8e, privilege & 0x0f]);
}

export interface AuthCapabilities {
  readonly channel: number;
  readonly ipmiV20: boolean;
}

export function parseAuthCapabilities(data: Uint8Array): AuthCapabilities {
  need(data, 8, 'Get Channel Authentication Capabilities');
  return { channel: data[0]!, ipmiV20: (data[1]! & 0x80) !== 0 && (data[3]! & 0x02) !== 0 };
}

/** List algorithms by cipher suite (bit 7), IPMI payload, 16-byte block `index`. */
export function cipherSuitesRequest(index: number): Uint8Array {
  return new Uint8Array([0x0e, 0x00, 0x80 | (index & 0x3f)]);
}

export interface CipherSuiteRecord {
  readonly id: number;
  readonly auth: number;
  readonly integrity: number;
  readonly confidentiality: number;
}

/** Section 22.15, Table 22-19: 0xC0 + suite ID, then the algorithms tagged by their top two bits. */
export function parseCipherSuiteRecords(records: Uint8Array): CipherSuiteRecord[] {
  const out: CipherSuiteRecord[] = [];
  let i = 0;
  while (i < records.length) {
    const start = records[i]!;
    if (start !== 0xc0 && start !== 0xc1) {
      i++;
      continue;
    }
    i += start === 0xc1 ? 5 : 2; // 0xC1 records carry a 3-byte OEM IANA.
    const id = records[i - 1]!;
    let auth = -1;
    let integrity = -1;
    let confidentiality = -1;
    while (i < records.length && records[i]! < 0xc0) {
      const b = records[i++]!;
      if ((b & 0xc0) === 0x00) auth = b & 0x3f;
      else if ((b & 0xc0) === 0x40) integrity = b & 0x3f;
      else confidentiality = b & 0x3f;
    }
    if (auth >= 0 && integrity >= 0 && confidentiality >= 0) out.push({ id, auth, integrity, confidentiality });
  }
  return out;
}

export interface DeviceId {
  readonly deviceId: number;
  readonly deviceRevision: number;
  readonly firmwareRevision: string;
  readonly ipmiVersion: string;
  readonly manufacturerId: number;
  readonly productId: number;
}

export function parseDeviceId(data: Uint8Array): DeviceId {
  need(data, 11, 'Get Device ID');
  const minor = data[3]!;
  return {
    deviceId: data[0]!,
    deviceRevision: data[1]! & 0x0f,
    firmwareRevision: `${data[2]! & 0x7f}.${(minor >> 4).toString()}${(minor & 0x0f).toString()}`,
    ipmiVersion: `${data[4]! & 0x0f}.${data[4]! >> 4}`,
    manufacturerId: data[6]! | (data[7]! << 8) | ((data[8]! & 0x0f) << 16),
    productId: data[9]! | (data[10]! << 8),
  };
}

export interface ChassisStatus {
  readonly powerOn: boolean;
}

export function parseChassisStatus(data: Uint8Array): ChassisStatus {
  need(data, 3, 'Get Chassis Status');
  return { powerOn: (data[0]! & 0x01) !== 0 };
}

export interface BootFlags {
  /** pxe, disk, cdrom, bios, or "default" for no override. */
  readonly device: string;
  readonly persistent: boolean;
  readonly uefi: boolean;
  /** Bit 7 of data 1: the flags are in effect. */
  readonly valid: boolean;
}

const DEVICE_SELECTORS: readonly (readonly [number, string])[] = [
  [0x0, 'default'],
  [0x1, 'pxe'],
  [0x2, 'disk'],
  [0x3, 'disk-safe'],
  [0x4, 'diag'],
  [0x5, 'cdrom'],
  [0x6, 'bios'],
  [0xf, 'floppy'],
];

export function encodeBootFlags(flags: BootFlags): Uint8Array {
  const selector = DEVICE_SELECTORS.find(([, name]) => name === flags.device)?.[0];
  if (selector === undefined) throw new RangeError(`unknown boot device ${flags.device}`);
  return new Uint8Array([(flags.valid ? 0x80 : 0) | (flags.persistent ? 0x40 : 0) | (flags.uefi ? 0x20 : 0), selector << 2, 0, 0, 0]);
}

export function decodeBootFlags(data: Uint8Array): BootFlags {
  need(data, 2, 'boot flags');
  const selector = (data[1]! >> 2) & 0x0f;
  const device = DEVICE_SELECTORS.find(([s]) => s === selector)?.[1] ?? `selector-${selector}`;
  return { device, valid: (data[0]! & 0x80) !== 0, persistent: (data[0]! & 0x40) !== 0, uefi: (data[0]! & 0x20) !== 0 };
}

export function setBootFlagsRequest(flags: BootFlags): Uint8Array {
  return new Uint8Array([BOOT_PARAM_FLAGS, ...encodeBootFlags(flags)]);
}

export function getBootOptionRequest(parameter: number): Uint8Array {
  return new Uint8Array([parameter & 0x7f, 0, 0]);
}

/** Get System Boot Options response: parameter version, parameter (bit 7: invalid), data. */
export function parseBootFlagsResponse(data: Uint8Array): BootFlags {
  need(data, 4, 'Get System Boot Options');
  if ((data[1]! & 0x7f) !== BOOT_PARAM_FLAGS) throw new IpmiDecodeError('payload', `asked for boot parameter 5, got ${data[1]! & 0x7f}`);
  return decodeBootFlags(data.subarray(2));
}
