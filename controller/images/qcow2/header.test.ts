import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BmError } from '../../errors.ts';
import { Qcow2FormatError, UnsupportedImageError } from '../errors.ts';
import { assertReadable, parseQcow2Header } from './header.ts';

/** A v3 header of `length` bytes (default: one 64 KiB cluster) with the fields tests usually set. */
function v3(fill: (view: DataView, bytes: Uint8Array) => void = () => {}, length = 65536): Uint8Array {
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x514649fb);
  view.setUint32(4, 3);
  view.setUint32(20, 16);
  view.setBigUint64(24, 1n << 30n);
  view.setUint32(36, 2);
  view.setBigUint64(40, 0x30000n);
  view.setBigUint64(48, 0x10000n);
  view.setUint32(56, 1);
  view.setUint32(96, 4);
  view.setUint32(100, 112);
  fill(view, bytes);
  return bytes;
}

function extension(bytes: Uint8Array, at: number, type: number, data: Uint8Array): number {
  const view = new DataView(bytes.buffer);
  view.setUint32(at, type);
  view.setUint32(at + 4, data.length);
  bytes.set(data, at + 8);
  return at + 8 + Math.ceil(data.length / 8) * 8;
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('qcow2 header', () => {
  it('parses a version 3 header field by field', () => {
    const header = parseQcow2Header(v3());
    expect(header).toMatchObject({
      version: 3,
      clusterBits: 16,
      clusterSize: 65536,
      virtualSize: 2 ** 30,
      cryptMethod: 'none',
      l1Size: 2,
      l1TableOffset: 0x30000,
      refcountTableOffset: 0x10000,
      refcountTableClusters: 1,
      refcountOrder: 4,
      headerLength: 112,
      compressionType: 0,
      dirty: false,
      corrupt: false,
      extendedL2: false,
      backingFileOffset: 0,
    });
    expect(() => assertReadable(header)).not.toThrow();
  });

  it('parses a version 2 header of exactly 72 bytes with the v2 defaults', () => {
    const bytes = v3().slice(0, 72);
    new DataView(bytes.buffer).setUint32(4, 2);
    const header = parseQcow2Header(bytes);
    expect(header).toMatchObject({ version: 2, headerLength: 72, refcountOrder: 4, incompatibleFeatures: 0n });
  });

  it('reads the dirty bit and still allows reading', () => {
    const header = parseQcow2Header(v3((view) => view.setBigUint64(72, 1n)));
    expect(header.dirty).toBe(true);
    expect(() => assertReadable(header)).not.toThrow();
  });

  it('refuses the corrupt bit with a format error naming the field', () => {
    const header = parseQcow2Header(v3((view) => view.setBigUint64(72, 2n)));
    expect(() => assertReadable(header)).toThrow(Qcow2FormatError);
    expect(() => assertReadable(header)).toThrow(/incompatible_features: the corrupt bit/);
  });

  it('refuses a wrong magic, naming the value', () => {
    expect(() => parseQcow2Header(v3((view) => view.setUint32(0, 0x7f454c46)))).toThrow(/magic: 0x7f454c46 is not the qcow2 magic/);
  });

  it.each([1, 4, 0xffffffff])('refuses version %i as unsupported', (version) => {
    expect(() => parseQcow2Header(v3((view) => view.setUint32(4, version)))).toThrow(UnsupportedImageError);
  });

  it('accepts cluster_bits 9..21 and refuses 8 and 22', () => {
    for (let bits = 9; bits <= 21; bits++) {
      const header = parseQcow2Header(
        v3(
          (view) => {
            view.setUint32(20, bits);
            view.setBigUint64(40, 4n << 21n);
            view.setBigUint64(48, 2n << 21n);
            view.setUint32(100, 104);
          },
          Math.max(512, 2 ** bits),
        ),
      );
      expect(header.clusterSize).toBe(2 ** bits);
    }
    expect(() => parseQcow2Header(v3((view) => view.setUint32(20, 8)))).toThrow(/cluster_bits: 8 is below the minimum/);
    expect(() => parseQcow2Header(v3((view) => view.setUint32(20, 22)))).toThrow(UnsupportedImageError);
  });

  it('caps the virtual size at 64 TiB', () => {
    expect(parseQcow2Header(v3((view) => view.setBigUint64(24, 64n << 40n))).virtualSize).toBe(2 ** 46);
    expect(() => parseQcow2Header(v3((view) => view.setBigUint64(24, (64n << 40n) + 1n)))).toThrow(/size: virtual size/);
    expect(() => parseQcow2Header(v3((view) => view.setBigUint64(24, 0xffffffffffffffffn)))).toThrow(UnsupportedImageError);
  });

  it('drops a partial last sector from the virtual size, as QEMU does', () => {
    expect(parseQcow2Header(v3((view) => view.setBigUint64(24, 1025n))).virtualSize).toBe(1024);
  });

  it('refuses an L1 table offset that is not cluster aligned', () => {
    expect(() => parseQcow2Header(v3((view) => view.setBigUint64(40, 0x30200n)))).toThrow(/l1_table_offset: 0x30200 is not aligned/);
  });

  it('refuses header_length that is short, unaligned or beyond the cluster', () => {
    for (const length of [100, 108, 65544]) {
      expect(() => parseQcow2Header(v3((view) => view.setUint32(100, length)))).toThrow(/header_length/);
    }
  });

  it('refuses a truncated header', () => {
    expect(() => parseQcow2Header(v3().slice(0, 50))).toThrow(/shorter than the 72-byte/);
    expect(() => parseQcow2Header(v3().slice(0, 90))).toThrow(/version 3 header needs 104/);
  });

  it('reads zstd compression (type 1) and refuses unknown compression types', () => {
    const withType = (type: number): Uint8Array =>
      v3((view) => {
        view.setBigUint64(72, 1n << 3n);
        view.setUint8(104, type);
      });
    const zstd = parseQcow2Header(withType(1));
    expect(zstd.compressionType).toBe(1);
    expect(() => assertReadable(zstd)).not.toThrow();
    const unknown = parseQcow2Header(withType(2));
    expect(() => assertReadable(unknown)).toThrow(
      /compression_type: compression type 2 \(only 0, zlib\/deflate, and 1, zstd, are supported\)/,
    );
  });

  it('refuses a compression type without its feature bit, and the bit without a type', () => {
    expect(() => parseQcow2Header(v3((view) => view.setUint8(104, 1)))).toThrow(/compression_type: 1 without/);
    expect(() => parseQcow2Header(v3((view) => view.setBigUint64(72, 1n << 3n)))).toThrow(/compression_type/);
  });

  it('reads extended L2 and refuses it below 16 KiB clusters', () => {
    expect(parseQcow2Header(v3((view) => view.setBigUint64(72, 1n << 4n))).extendedL2).toBe(true);
    expect(() =>
      parseQcow2Header(
        v3((view) => {
          view.setBigUint64(72, 1n << 4n);
          view.setUint32(20, 13);
        }),
      ),
    ).toThrow(/minimum with extended L2/);
  });

  it('finds the external data file name and refuses the image', () => {
    const header = parseQcow2Header(
      v3((view, bytes) => {
        view.setBigUint64(72, 1n << 2n);
        extension(bytes, 112, 0x44415441, text('data.raw'));
      }),
    );
    expect(header.externalDataFile).toBe('data.raw');
    expect(() => assertReadable(header)).toThrow(/external_data_file: .*"data.raw"/);
  });

  it('finds the backing file and its format and refuses the image', () => {
    const header = parseQcow2Header(
      v3((view, bytes) => {
        extension(bytes, 112, 0xe2792aca, text('qcow2'));
        view.setBigUint64(8, 0x200n);
        view.setUint32(16, 9);
        bytes.set(text('base.img!'), 0x200);
      }),
    );
    expect(header.backingFile).toBe('base.img!');
    expect(header.backingFormat).toBe('qcow2');
    const error = (() => {
      try {
        assertReadable(header);
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(UnsupportedImageError);
    expect((error as UnsupportedImageError).feature).toBe('backing_file');
    expect((error as Error).message).toContain('"base.img!", format qcow2');
  });

  it('refuses a backing file name longer than 1023 bytes', () => {
    expect(() =>
      parseQcow2Header(
        v3((view) => {
          view.setBigUint64(8, 0x200n);
          view.setUint32(16, 1024);
        }),
      ),
    ).toThrow(/backing_file_size: 1024/);
  });

  it.each([
    [1, 'aes'],
    [2, 'luks'],
  ])('refuses crypt_method %i (%s) as unsupported', (method, name) => {
    const header = parseQcow2Header(v3((view) => view.setUint32(32, method)));
    expect(() => assertReadable(header)).toThrow(new RegExp(`crypt_method: image is encrypted \\(${name}`));
  });

  it("names unknown incompatible features from the image's feature table", () => {
    const entry = new Uint8Array(48);
    entry[0] = 0;
    entry[1] = 7;
    entry.set(text('teleportation'), 2);
    const header = parseQcow2Header(
      v3((view, bytes) => {
        view.setBigUint64(72, 1n << 7n);
        extension(bytes, 112, 0x6803f857, entry);
      }),
    );
    expect(header.featureNames.get('incompatible:7')).toBe('teleportation');
    expect(() => assertReadable(header)).toThrow(/unknown incompatible features: bit 7 \("teleportation"\)/);
  });

  it('refuses a header extension that runs past the first cluster', () => {
    expect(() =>
      parseQcow2Header(
        v3((view) => {
          view.setUint32(112, 0x12345678);
          view.setUint32(116, 70000);
        }),
      ),
    ).toThrow(/header_extension: extension 0x12345678 at 112 claims 70000 bytes/);
  });

  it('skips unknown extensions and stops at the end marker', () => {
    const header = parseQcow2Header(
      v3((_view, bytes) => {
        let at = extension(bytes, 112, 0x11111111, text('hello'));
        at = extension(bytes, at, 0, new Uint8Array());
        extension(bytes, at, 0x44415441, text('after-end'));
      }),
    );
    expect(header.externalDataFile).toBeUndefined();
  });

  it('never throws anything but a typed error on arbitrary or mutated bytes', () => {
    const base = v3();
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: 300 }),
          fc.array(fc.tuple(fc.nat(255), fc.nat(255)), { maxLength: 16 }).map((edits) => {
            const bytes = base.slice(0, 512);
            for (const [at, value] of edits) bytes[at] = value;
            return bytes;
          }),
        ),
        (bytes) => {
          try {
            const header = parseQcow2Header(bytes);
            assertReadable(header);
          } catch (err) {
            if (!(err instanceof BmError)) throw err;
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});
