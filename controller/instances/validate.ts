/**
 * Checks on what a tenant sends to boot an instance. Field names in errors
 * are the API's, so `bmctl boot` users see the flag they typed.
 */
import { isIPv4 } from 'node:net';
import { ValidationError } from '../errors.ts';
import { isUuid } from '../nodes/index.ts';
import type { InstanceNetwork } from './types.ts';

export const MAX_USER_DATA = 64 * 1024;
const MAX_KEYS = 16;
const NAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
// "type base64 [comment]": what authorized_keys takes; no control characters, one line.
const SSH_KEY =
  /^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]{16,16384}( [\x20-\x7e]{0,255})?$/;

export function checkInstanceName(name: string): string {
  // The name becomes the host name cloud-init sets: a DNS label.
  if (!NAME.test(name) || isUuid(name))
    throw new ValidationError('name', 'must be a host name label: 1-63 letters, digits or "-", not starting or ending with "-"');
  return name;
}

export function checkUserData(data: Uint8Array): Buffer | null {
  if (data.length > MAX_USER_DATA) throw new ValidationError('user_data', `at most ${MAX_USER_DATA} bytes (got ${data.length})`);
  return data.length === 0 ? null : Buffer.from(data);
}

export function checkSshKeys(keys: readonly string[]): string[] {
  if (keys.length > MAX_KEYS) throw new ValidationError('ssh_keys', `at most ${MAX_KEYS} keys`);
  return keys.map((k, i) => {
    const key = k.trim();
    if (!SSH_KEY.test(key))
      throw new ValidationError(`ssh_keys[${i}]`, 'must be one OpenSSH public key line ("ssh-ed25519 AAAA... comment")');
    return key;
  });
}

function prefixToMask(prefix: number): string {
  const bits = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((s) => (bits >>> s) & 0xff).join('.');
}

export function checkNetwork(
  input: { mode: string; address: string; netmask: string; gateway: string; dns: readonly string[] } | undefined,
): InstanceNetwork {
  if (!input || input.mode === '' || input.mode === 'dhcp') {
    if (input && (input.address || input.netmask || input.gateway || input.dns.length > 0))
      throw new ValidationError('network', 'address, netmask, gateway and dns go with mode "static"');
    return { mode: 'dhcp' };
  }
  if (input.mode !== 'static') throw new ValidationError('network.mode', 'must be dhcp or static');
  if (!isIPv4(input.address)) throw new ValidationError('network.address', 'must be an IPv4 address');
  let netmask = input.netmask;
  if (/^\d{1,2}$/.test(netmask) && Number(netmask) <= 32) netmask = prefixToMask(Number(netmask));
  if (!isIPv4(netmask)) throw new ValidationError('network.netmask', 'must be a dotted mask or a prefix length');
  if (input.gateway !== '' && !isIPv4(input.gateway)) throw new ValidationError('network.gateway', 'must be an IPv4 address');
  if (input.dns.length > 4) throw new ValidationError('network.dns', 'at most 4 servers');
  input.dns.forEach((d, i) => {
    if (!isIPv4(d)) throw new ValidationError(`network.dns[${i}]`, 'must be an IPv4 address');
  });
  return { mode: 'static', address: input.address, netmask, ...(input.gateway ? { gateway: input.gateway } : {}), dns: [...input.dns] };
}
