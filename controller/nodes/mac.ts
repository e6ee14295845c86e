/**
 * MAC addresses as ports store them: lower-case, colon-separated. Operators
 * paste MACs from BMC web pages, switch CLIs and spreadsheets, so the common
 * spellings are accepted; group addresses are refused because no NIC has one.
 */
import { ValidationError } from '../errors.ts';

const separated = /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/;
const ciscoDotted = /^([0-9a-f]{4})\.([0-9a-f]{4})\.([0-9a-f]{4})$/;
const bare = /^[0-9a-f]{12}$/;

export function normalizeMac(input: string, field = 'mac'): string {
  const text = input.trim().toLowerCase();
  let hex: string | undefined;
  if (text.length <= 17) {
    const m = separated.exec(text);
    if (m) hex = m.slice(1).join('');
    else if (ciscoDotted.test(text)) hex = text.replaceAll('.', '');
    else if (bare.test(text)) hex = text;
  }
  if (hex === undefined) {
    const shown = input.length > 40 ? `${input.slice(0, 37)}...` : input;
    throw new ValidationError(field, `"${shown}" is not a MAC address (expected six hex pairs like 52:54:00:12:34:56)`);
  }
  if (hex === '000000000000') throw new ValidationError(field, 'the all-zero MAC is not a NIC address');
  // Bit 0 of the first octet marks a group (multicast/broadcast) address.
  if (parseInt(hex.slice(0, 2), 16) & 1)
    throw new ValidationError(field, `${formatMac(hex)} is a multicast or broadcast address, not a NIC's`);
  return formatMac(hex);
}

function formatMac(hex: string): string {
  return hex.match(/../g)!.join(':');
}
