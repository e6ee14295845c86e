import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bothEndian32, buildIso9660, erEntry, primaryDirName, primaryFileName, recordDate, SECTOR, ucs2be, volumeDate } from './iso9660.ts';

const ascii = (bytes: Uint8Array): string => new TextDecoder('latin1').decode(bytes);
const le32 = (bytes: Uint8Array, at: number): number => new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true);
const be32 = (bytes: Uint8Array, at: number): number => new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, false);

describe('ISO 9660 encoders', () => {
  it('writes both-byte-order numbers little-endian first (7.3.3)', () => {
    expect([...bothEndian32(0x12345678)]).toEqual([0x78, 0x56, 0x34, 0x12, 0x12, 0x34, 0x56, 0x78]);
  });

  it('encodes record and volume dates in UTC', () => {
    const date = new Date('2026-03-04T05:06:07Z');
    expect([...recordDate(date)]).toEqual([126, 3, 4, 5, 6, 7, 0]);
    expect(ascii(volumeDate(date).subarray(0, 16))).toBe('2026030405060700');
    expect(volumeDate(undefined)[16]).toBe(0);
    expect(ascii(volumeDate(undefined).subarray(0, 16))).toBe('0000000000000000');
  });

  it('maps names to ISO level 2 d-characters', () => {
    expect(primaryFileName('meta_data.json')).toBe('META_DATA.JSON;1');
    expect(primaryFileName('network_data.json')).toBe('NETWORK_DATA.JSON;1');
    expect(primaryFileName('user_data')).toBe('USER_DATA.;1');
    expect(primaryFileName('a-b.tar.gz')).toBe('A_B_TAR.GZ;1');
    expect(primaryDirName('openstack')).toBe('OPENSTACK');
    expect(ucs2be('ab')).toEqual(Uint8Array.of(0, 0x61, 0, 0x62));
  });

  it('writes the RRIP_1991A extension reference', () => {
    const er = erEntry();
    expect(ascii(er.subarray(0, 2))).toBe('ER');
    expect(er[2]).toBe(er.length);
    expect([er[3], er[4], er[7]]).toEqual([1, 10, 1]);
    expect(ascii(er.subarray(8, 18))).toBe('RRIP_1991A');
  });
});

describe('ISO 9660 image', () => {
  const image = buildIso9660({
    volumeId: 'config-2',
    files: [{ path: 'openstack/latest/meta_data.json', data: new TextEncoder().encode('{}') }],
  });

  it('has the primary, Joliet and terminating descriptors at sectors 16, 17 and 18', () => {
    const pvd = image.subarray(16 * SECTOR, 17 * SECTOR);
    expect(pvd[0]).toBe(1);
    expect(ascii(pvd.subarray(1, 6))).toBe('CD001');
    expect(ascii(pvd.subarray(40, 72))).toBe('config-2'.padEnd(32, ' '));
    expect(le32(pvd, 80)).toBe(image.length / SECTOR);
    expect(be32(pvd, 84)).toBe(image.length / SECTOR);
    expect(pvd[156]).toBe(34);
    const svd = image.subarray(17 * SECTOR, 18 * SECTOR);
    expect(svd[0]).toBe(2);
    expect(ascii(svd.subarray(88, 91))).toBe('%/E');
    expect(svd.subarray(40, 56)).toEqual(ucs2be('config-2'));
    expect(image[18 * SECTOR]).toBe(255);
  });

  it('starts the root directory with "." carrying SP, PX and CE', () => {
    const rootExtent = le32(image, 16 * SECTOR + 156 + 2);
    const self = image.subarray(rootExtent * SECTOR);
    expect(self[32]).toBe(1);
    expect(self[33]).toBe(0);
    expect(ascii(self.subarray(34, 36))).toBe('SP');
    expect([self[37], self[38], self[39], self[40]]).toEqual([1, 0xbe, 0xef, 0]);
    expect(ascii(self.subarray(41, 43))).toBe('PX');
    expect(ascii(self.subarray(77, 79))).toBe('CE');
    const continuation = le32(self, 77 + 4);
    expect(ascii(image.subarray(continuation * SECTOR, continuation * SECTOR + 2))).toBe('ER');
  });

  it('is deterministic, whole sectors, and its volume size field is its length', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 6000 }), { minLength: 1, maxLength: 5 }), (contents) => {
        const files = contents.map((data, i) => ({ path: `d${i % 2}/f${i}`, data }));
        const first = buildIso9660({ volumeId: 'x', files });
        expect(first.length % SECTOR).toBe(0);
        expect(le32(first, 16 * SECTOR + 80)).toBe(first.length / SECTOR);
        expect(buildIso9660({ volumeId: 'x', files })).toEqual(first);
      }),
      { numRuns: 50 },
    );
  });

  it('refuses bad paths', () => {
    expect(() => buildIso9660({ volumeId: 'x', files: [{ path: 'a//b', data: new Uint8Array() }] })).toThrow(/bad path/);
    expect(() => buildIso9660({ volumeId: 'x', files: [{ path: '../b', data: new Uint8Array() }] })).toThrow(/bad path/);
    expect(() =>
      buildIso9660({
        volumeId: 'x',
        files: [
          { path: 'a', data: new Uint8Array() },
          { path: 'a/b', data: new Uint8Array() },
        ],
      }),
    ).toThrow(/file and a directory/);
    expect(() => buildIso9660({ volumeId: 'a-volume-label-that-is-far-too-long', files: [] })).toThrow(/longer than/);
  });
});
