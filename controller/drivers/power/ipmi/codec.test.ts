/** Byte vectors for the RMCP+/IPMI codecs and crypto (pure functions, no sockets). */
import { createDecipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeBootFlags, encodeBootFlags, parseCipherSuiteRecords } from './commands.ts';
import { SUITE_17, SUITE_3, decryptPayload, deriveKeys, encryptPayload, hmac, integrityCode } from './crypto.ts';
import { IpmiDecodeError } from './errors.ts';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse } from './message.ts';
import { decodeEnvelope, encodeV15, encodeV20, openPayload } from './packet.ts';
import { decodeOpenSessionRequest, encodeOpenSessionRequest } from './rakp.ts';
import { SequenceWindow } from './window.ts';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('IPMI message', () => {
  it('encodes Get Device ID with both checksums', () => {
    expect(toHex(encodeRequest(0x06, 0x01, 1))).toBe('2018c88104017a');
  });

  it('answers a request with netFn+1 and the request sequence, and rejects a bad checksum', () => {
    const req = decodeRequest(hex('2018c88104017a'));
    const res = decodeResponse(encodeResponse(req, 0x00, new Uint8Array([0x20])));
    expect(res).toMatchObject({ netFn: 0x06, command: 0x01, sequence: 1, completionCode: 0 });
    expect(() => decodeRequest(hex('2018c88104017b'))).toThrow(IpmiDecodeError);
  });
});

describe('RMCP and session headers', () => {
  it('wraps a v1.5 message without authentication', () => {
    expect(toHex(encodeV15(hex('2018c88104017a')))).toBe('0600ff0700' + '00000000' + '00000000' + '07' + '2018c88104017a');
  });

  it('signs and encrypts an RMCP+ packet whose covered part is a multiple of 4', () => {
    for (const suite of [SUITE_3, SUITE_17]) {
      const keys = deriveKeys(suite, new Uint8Array(20).fill(7));
      const packet = encodeV20({
        payloadType: 0,
        sessionId: 0x01020304,
        sequence: 5,
        payload: hex('2018c88104017a'),
        keys,
        iv: new Uint8Array(16),
      });
      expect(packet.subarray(0, 6)).toEqual(hex('0600ff0706c0'));
      expect(packet.subarray(6, 10)).toEqual(hex('04030201'));
      expect((packet.length - 4 - suite.integrityLength) % 4).toBe(0);
      const env = decodeEnvelope(packet, () => suite.integrityLength);
      if (env.format !== 'v2.0') throw new Error('expected RMCP+');
      expect(openPayload(env, keys)).toEqual(hex('2018c88104017a'));
      expect(() => openPayload(env, deriveKeys(suite, new Uint8Array(20).fill(8)))).toThrow(/AuthCode/);
    }
  });

  it('refuses an unsigned packet inside a session', () => {
    const keys = deriveKeys(SUITE_3, new Uint8Array(20));
    const env = decodeEnvelope(encodeV20({ payloadType: 0, sessionId: 9, sequence: 1, payload: hex('00') }), () => 0);
    if (env.format !== 'v2.0') throw new Error('expected RMCP+');
    expect(() => openPayload(env, keys)).toThrow(IpmiDecodeError);
  });
});

describe('crypto', () => {
  it('computes HMAC-SHA1 (RFC 2202 case 1) and truncates it to 96 bits for integrity', () => {
    const key = new Uint8Array(20).fill(0x0b);
    const data = new TextEncoder().encode('Hi There');
    expect(toHex(hmac('sha1', key, data))).toBe('b617318655057264e28bc0b6fb378c8ef146be00');
    expect(toHex(integrityCode({ suite: SUITE_3, k1: key, aesKey: new Uint8Array(16) }, data))).toBe('b617318655057264e28bc0b6');
  });

  it('pads AES-CBC payloads with 1, 2, 3... and the pad length', () => {
    const key = new Uint8Array(16).fill(1);
    const iv = new Uint8Array(16).fill(2);
    const sealed = encryptPayload(key, hex('01020304050607'), iv);
    expect(sealed.length).toBe(32);
    const d = createDecipheriv('aes-128-cbc', key, iv).setAutoPadding(false);
    const plain = Buffer.concat([d.update(sealed.subarray(16)), d.final()]);
    expect(toHex(plain)).toBe('01020304050607' + '0102030405060708' + '08');
    expect(decryptPayload(key, sealed)).toEqual(hex('01020304050607'));
  });

  it('derives K1 and K2 from the SIK with 20-byte constants', () => {
    const sik = new Uint8Array(32).fill(3);
    const keys = deriveKeys(SUITE_17, sik);
    expect(keys.k1).toEqual(hmac('sha256', sik, new Uint8Array(20).fill(1)));
    expect(keys.aesKey).toEqual(hmac('sha256', sik, new Uint8Array(20).fill(2)).subarray(0, 16));
  });
});

describe('payloads and parameters', () => {
  it('round-trips an Open Session Request for suite 17', () => {
    const bytes = encodeOpenSessionRequest({
      tag: 1,
      maxPrivilege: 4,
      consoleSessionId: 0xa0b0c0d0,
      algorithms: { auth: 3, integrity: 4, confidentiality: 1 },
    });
    expect(toHex(bytes)).toBe('01040000d0c0b0a0' + '0000000803000000' + '0100000804000000' + '0200000801000000');
    expect(decodeOpenSessionRequest(bytes).algorithms).toEqual({ auth: 3, integrity: 4, confidentiality: 1 });
  });

  it('reads cipher suite records', () => {
    expect(parseCipherSuiteRecords(hex('c003 01 41 81 c011 03 44 81')).map((r) => r.id)).toEqual([3, 17]);
  });

  it('encodes boot flags: PXE, persistent, EFI', () => {
    const flags = { device: 'pxe', persistent: true, uefi: true, valid: true };
    expect(toHex(encodeBootFlags(flags))).toBe('e004000000');
    expect(decodeBootFlags(hex('e004000000'))).toEqual(flags);
    expect(decodeBootFlags(hex('8008000000')).device).toBe('disk');
  });
});

describe('sequence window', () => {
  it('accepts new numbers once, a little out of order, and rejects replays and jumps', () => {
    const w = new SequenceWindow();
    expect(w.accept(0)).toBe(false);
    expect(w.accept(10)).toBe(true);
    expect(w.accept(10)).toBe(false);
    expect(w.accept(12)).toBe(true);
    expect(w.accept(11)).toBe(true);
    expect(w.accept(11)).toBe(false);
    expect(w.accept(12 + 16)).toBe(false);
    expect(w.accept(12 - 17)).toBe(false);
    expect(w.accept(27)).toBe(true);
  });
});
