/**
 * The IPMI message inside an IPMI payload (LAN format, IPMI v2.0 section
 * 13.8): responder/requester addresses, netFn/LUN, the 6-bit request
 * sequence that pairs a response with its request, and two checksums.
 */
import { IpmiDecodeError } from './errors.ts';

export const NETFN_CHASSIS = 0x00;
export const NETFN_APP = 0x06;
export const BMC_ADDRESS = 0x20;
/** Software ID of a remote console (section 5.5). */
export const CONSOLE_ADDRESS = 0x81;

export interface IpmiRequest {
  readonly netFn: number;
  readonly command: number;
  readonly sequence: number;
  readonly data: Uint8Array;
  readonly responderAddress: number;
  readonly requesterAddress: number;
  readonly requesterLun: number;
}

export interface IpmiResponse {
  readonly netFn: number;
  readonly command: number;
  readonly sequence: number;
  readonly completionCode: number;
  readonly data: Uint8Array;
}

function checksum(bytes: Uint8Array, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += bytes[i]!;
  return -sum & 0xff;
}

function frame(first: number, netFnLun: number, second: number, seqLun: number, command: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(7 + body.length);
  out[0] = first;
  out[1] = netFnLun;
  out[2] = checksum(out, 0, 2);
  out[3] = second;
  out[4] = seqLun;
  out[5] = command;
  out.set(body, 6);
  out[out.length - 1] = checksum(out, 3, out.length - 1);
  return out;
}

function unframe(bytes: Uint8Array): void {
  if (bytes.length < 7) throw new IpmiDecodeError('truncated', `IPMI message of ${bytes.length} bytes is shorter than its header`);
  if (checksum(bytes, 0, 2) !== bytes[2]) throw new IpmiDecodeError('checksum', 'IPMI header checksum is wrong');
  if (checksum(bytes, 3, bytes.length - 1) !== bytes[bytes.length - 1])
    throw new IpmiDecodeError('checksum', 'IPMI data checksum is wrong');
}

export function encodeRequest(netFn: number, command: number, sequence: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  return frame(BMC_ADDRESS, (netFn << 2) & 0xfc, CONSOLE_ADDRESS, (sequence << 2) & 0xfc, command, data);
}

export function decodeRequest(bytes: Uint8Array): IpmiRequest {
  unframe(bytes);
  return {
    responderAddress: bytes[0]!,
    netFn: bytes[1]! >> 2,
    requesterAddress: bytes[3]!,
    sequence: bytes[4]! >> 2,
    requesterLun: bytes[4]! & 0x03,
    command: bytes[5]!,
    data: bytes.subarray(6, bytes.length - 1),
  };
}

export function encodeResponse(request: IpmiRequest, completionCode: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const body = new Uint8Array(1 + data.length);
  body[0] = completionCode;
  body.set(data, 1);
  return frame(
    request.requesterAddress,
    (((request.netFn | 1) << 2) & 0xfc) | request.requesterLun,
    request.responderAddress,
    (request.sequence << 2) & 0xfc,
    request.command,
    body,
  );
}

export function decodeResponse(bytes: Uint8Array): IpmiResponse {
  unframe(bytes);
  if (bytes.length < 8) throw new IpmiDecodeError('truncated', 'IPMI response has no completion code');
  const netFn = bytes[1]! >> 2;
  if ((netFn & 1) !== 1) throw new IpmiDecodeError('payload', `netFn ${netFn} is a request, not a response`);
  return {
    netFn: netFn & ~1,
    sequence: bytes[4]! >> 2,
    command: bytes[5]!,
    completionCode: bytes[6]!,
    data: bytes.subarray(7, bytes.length - 1),
  };
}
