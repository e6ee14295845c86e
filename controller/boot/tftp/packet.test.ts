import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MalformedPacketError } from '../errors.ts';
import { negotiate } from './options.ts';
import { encodeAck, encodeData, encodeError, encodeOack, encodeRequest, parsePacket } from './packet.ts';

const bytes = (...parts: (number | string)[]): Uint8Array =>
  new Uint8Array(parts.flatMap((p) => (typeof p === 'number' ? [p] : [...Buffer.from(p, 'latin1')])));

describe('TFTP codec', () => {
  it('parses an RRQ with options, names lower-cased', () => {
    const wire = bytes(0, 1, 'pxelinux.0', 0, 'OCTET', 0, 'BLKSIZE', 0, '1428', 0, 'tsize', 0, '0', 0, 'windowsize', 0, '16', 0);
    expect(parsePacket(wire)).toEqual({
      kind: 'rrq',
      filename: 'pxelinux.0',
      mode: 'octet',
      options: new Map([
        ['blksize', '1428'],
        ['tsize', '0'],
        ['windowsize', '16'],
      ]),
    });
  });

  it('encodes DATA, ACK, ERROR and OACK as RFC 1350/2347 lay them out', () => {
    expect([...encodeAck(0x1234)]).toEqual([0, 4, 0x12, 0x34]);
    expect([...encodeData(1, bytes('ab'))]).toEqual([0, 3, 0, 1, 97, 98]);
    expect([...encodeError(2, 'no')]).toEqual([0, 5, 0, 2, 110, 111, 0]);
    expect([...encodeOack(new Map([['blksize', '8']]))]).toEqual([...bytes(0, 6, 'blksize', 0, '8', 0)]);
    expect(parsePacket(encodeRequest('rrq', 'a', 'octet', new Map([['tsize', '0']])))).toMatchObject({ kind: 'rrq', filename: 'a' });
  });

  it('rejects truncated, unterminated, unknown-opcode and odd-option packets', () => {
    for (const wire of [
      bytes(0, 1),
      bytes(0, 1, 'file', 0, 'octet'),
      bytes(0, 9, 0, 0),
      bytes(0, 1, 'f', 0, 'octet', 0, 'blksize', 0),
      bytes(0, 1, 'f', 0, 'bogus', 0),
      bytes(0, 1, 0, 'octet', 0),
      bytes(0, 4, 0, 1, 9),
      bytes(0, 1, 'f', 0, 'octet', 0, 'tsize', 0, '0', 0, 'TSIZE', 0, '0', 0),
    ]) {
      expect(() => parsePacket(wire)).toThrow(MalformedPacketError);
    }
  });

  it('never throws anything but MalformedPacketError on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), (wire) => {
        try {
          parsePacket(wire);
        } catch (err) {
          expect(err).toBeInstanceOf(MalformedPacketError);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('round-trips requests with arbitrary options', () => {
    const name = fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !s.includes('\0') && /^[\x20-\x7e]+$/.test(s));
    fc.assert(
      fc.property(
        name,
        fc.uniqueArray(
          fc.tuple(
            name.map((s) => s.toLowerCase()),
            name,
          ),
          { selector: (t) => t[0], maxLength: 5 },
        ),
        (file, opts) => {
          const parsed = parsePacket(encodeRequest('rrq', file, 'octet', new Map(opts)));
          expect(parsed).toEqual({ kind: 'rrq', filename: file, mode: 'octet', options: new Map(opts) });
        },
      ),
    );
  });
});

describe('TFTP option negotiation', () => {
  const limits = { maxBlockSize: 1468, maxWindowSize: 64 };
  it('caps blksize and windowsize at our limits and answers tsize with the file size', () => {
    const n = negotiate(
      new Map([
        ['blksize', '65464'],
        ['windowsize', '512'],
        ['tsize', '0'],
        ['timeout', '3'],
      ]),
      12345,
      limits,
    );
    expect(n.blockSize).toBe(1468);
    expect(n.windowSize).toBe(64);
    expect(n.timeoutMs).toBe(3000);
    expect(Object.fromEntries(n.accepted)).toEqual({ blksize: '1468', windowsize: '64', tsize: '12345', timeout: '3' });
  });
  it('ignores out-of-range and unknown options (plain RFC 1350 then)', () => {
    const n = negotiate(
      new Map([
        ['blksize', '7'],
        ['timeout', '0'],
        ['windowsize', 'x'],
        ['multicast', ''],
      ]),
      1,
      limits,
    );
    expect(n).toMatchObject({ blockSize: 512, windowSize: 1, timeoutMs: null });
    expect(n.accepted.size).toBe(0);
  });
});
