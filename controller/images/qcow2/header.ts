/**
 * The qcow2 header (QEMU docs/interop/qcow2.txt, "Header" and "Header
 * extensions"): a pure parse of the first cluster's bytes. Parsing checks the
 * header is well formed; `assertReadable` then refuses what we will not
 * deploy (backing files, encryption, external data, unknown compression
 * types, unknown features).
 * The split lets an operator tool describe an unsupported image instead of
 * only refusing it.
 */
import { hex, Qcow2FormatError, UnsupportedImageError } from '../errors.ts';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
export const MIN_CLUSTER_BITS = 9; // 512 B, the spec's floor
export const MAX_CLUSTER_BITS = 21; // 2 MiB, QEMU's implementation limit
/** Our cap on the virtual size: far beyond any disk we deploy to, small enough for exact JS numbers. */
export const MAX_VIRTUAL_SIZE = 64 * 2 ** 40;
const V2_HEADER_LENGTH = 72;
const V3_MIN_HEADER_LENGTH = 104;
const MAX_BACKING_NAME = 1023;

/** Incompatible feature bits (spec: header bytes 72-79). */
export const IncompatibleFeature = {
  dirty: 1n << 0n,
  corrupt: 1n << 1n,
  externalDataFile: 1n << 2n,
  compressionType: 1n << 3n,
  extendedL2: 1n << 4n,
} as const;
const KNOWN_INCOMPATIBLE = 0b11111n;

export const HeaderExtensionType = {
  end: 0x00000000,
  backingFormat: 0xe2792aca,
  featureNameTable: 0x6803f857,
  bitmaps: 0x23852875,
  fullDiskEncryption: 0x0537be77,
  externalDataFile: 0x44415441,
} as const;

export type CryptMethod = 'none' | 'aes' | 'luks' | 'unknown';

export interface Qcow2Header {
  readonly version: 2 | 3;
  readonly clusterBits: number;
  readonly clusterSize: number;
  readonly virtualSize: number;
  readonly cryptMethod: CryptMethod;
  readonly cryptMethodValue: number;
  readonly l1Size: number;
  readonly l1TableOffset: number;
  readonly refcountTableOffset: number;
  readonly refcountTableClusters: number;
  readonly snapshotCount: number;
  readonly snapshotsOffset: number;
  readonly incompatibleFeatures: bigint;
  readonly compatibleFeatures: bigint;
  readonly autoclearFeatures: bigint;
  readonly refcountOrder: number;
  readonly headerLength: number;
  /** 0 = zlib (deflate), 1 = zstd. */
  readonly compressionType: number;
  readonly dirty: boolean;
  readonly corrupt: boolean;
  readonly extendedL2: boolean;
  readonly backingFileOffset: number;
  readonly backingFileSize: number;
  /** The backing file name when it lies within the bytes parsed. */
  readonly backingFile: string | undefined;
  readonly backingFormat: string | undefined;
  readonly externalDataFile: string | undefined;
  readonly hasEncryptionHeader: boolean;
  /** Feature names the image itself declares, keyed "incompatible:3" etc., for clearer errors. */
  readonly featureNames: ReadonlyMap<string, string>;
}

const FEATURE_TYPES = ['incompatible', 'compatible', 'autoclear'] as const;

/**
 * Reads a u64 that must fit a JS number below `limit`; anything larger is
 * reported against `field` rather than silently rounded.
 */
function u64Below(view: DataView, at: number, field: string, limit: number): number {
  const value = view.getBigUint64(at);
  if (value >= BigInt(limit))
    throw new Qcow2FormatError(field, `value ${hex(value)} is too large (limit ${hex(limit)})`, { value: hex(value) });
  return Number(value);
}

function decodeString(bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
}

/**
 * Parses the header from the image's first bytes. Pass at least the first
 * cluster (or the whole file if it is shorter): header extensions live
 * anywhere in the first cluster.
 */
export function parseQcow2Header(bytes: Uint8Array): Qcow2Header {
  if (bytes.length < V2_HEADER_LENGTH) {
    throw new Qcow2FormatError('header', `file is ${bytes.length} bytes, shorter than the ${V2_HEADER_LENGTH}-byte qcow2 header`, {
      length: bytes.length,
    });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  if (magic !== QCOW2_MAGIC)
    throw new Qcow2FormatError('magic', `${hex(magic)} is not the qcow2 magic ${hex(QCOW2_MAGIC)}`, { value: hex(magic) });

  const versionValue = view.getUint32(4);
  if (versionValue !== 2 && versionValue !== 3) {
    throw new UnsupportedImageError('qcow2', 'version', `version ${versionValue} (only 2 and 3 are supported)`, { value: versionValue });
  }
  const version: 2 | 3 = versionValue;

  const clusterBits = view.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS) {
    throw new Qcow2FormatError('cluster_bits', `${clusterBits} is below the minimum ${MIN_CLUSTER_BITS} (512-byte clusters)`, {
      value: clusterBits,
    });
  }
  if (clusterBits > MAX_CLUSTER_BITS) {
    throw new UnsupportedImageError('qcow2', 'cluster_bits', `${clusterBits} exceeds ${MAX_CLUSTER_BITS} (clusters larger than 2 MiB)`, {
      value: clusterBits,
    });
  }
  const clusterSize = 2 ** clusterBits;

  const rawSize = view.getBigUint64(24);
  if (rawSize > BigInt(MAX_VIRTUAL_SIZE)) {
    throw new UnsupportedImageError('qcow2', 'size', `virtual size ${rawSize} exceeds the ${MAX_VIRTUAL_SIZE}-byte (64 TiB) limit`, {
      value: rawSize.toString(),
    });
  }
  // QEMU counts the disk in 512-byte sectors and drops a partial last sector
  // (total_sectors = size / 512); qemu-img never writes such a size, but a
  // hand-made one must read the way QEMU reads it.
  const virtualSize = Number(rawSize) - (Number(rawSize) % 512);

  const cryptMethodValue = view.getUint32(32);
  const cryptMethod: CryptMethod =
    cryptMethodValue === 0 ? 'none' : cryptMethodValue === 1 ? 'aes' : cryptMethodValue === 2 ? 'luks' : 'unknown';
  const l1Size = view.getUint32(36);
  // Offsets are bounded by 2^56 in the spec; 2^53 keeps them exact and is far beyond any real file.
  const l1TableOffset = u64Below(view, 40, 'l1_table_offset', 2 ** 53);
  const refcountTableOffset = u64Below(view, 48, 'refcount_table_offset', 2 ** 53);
  const refcountTableClusters = view.getUint32(56);
  const snapshotCount = view.getUint32(60);
  const snapshotsOffset = u64Below(view, 64, 'snapshots_offset', 2 ** 53);
  const backingFileOffset = u64Below(view, 8, 'backing_file_offset', 2 ** 53);
  const backingFileSize = view.getUint32(16);

  for (const [field, value] of [
    ['l1_table_offset', l1TableOffset],
    ['refcount_table_offset', refcountTableOffset],
  ] as const) {
    if (value % clusterSize !== 0)
      throw new Qcow2FormatError(field, `${hex(value)} is not aligned to the ${clusterSize}-byte cluster size`, { value: hex(value) });
  }
  if (snapshotCount > 0 && snapshotsOffset % clusterSize !== 0) {
    throw new Qcow2FormatError('snapshots_offset', `${hex(snapshotsOffset)} is not aligned to the ${clusterSize}-byte cluster size`, {
      value: hex(snapshotsOffset),
    });
  }

  let incompatibleFeatures = 0n;
  let compatibleFeatures = 0n;
  let autoclearFeatures = 0n;
  let refcountOrder = 4;
  let headerLength = V2_HEADER_LENGTH;
  let compressionType = 0;
  if (version === 3) {
    if (bytes.length < V3_MIN_HEADER_LENGTH) {
      throw new Qcow2FormatError('header', `version 3 header needs ${V3_MIN_HEADER_LENGTH} bytes, file has ${bytes.length}`, {
        length: bytes.length,
      });
    }
    incompatibleFeatures = view.getBigUint64(72);
    compatibleFeatures = view.getBigUint64(80);
    autoclearFeatures = view.getBigUint64(88);
    refcountOrder = view.getUint32(96);
    headerLength = view.getUint32(100);
    if (refcountOrder > 6)
      throw new Qcow2FormatError('refcount_order', `${refcountOrder} exceeds 6 (64-bit refcounts)`, { value: refcountOrder });
    if (headerLength < V3_MIN_HEADER_LENGTH || headerLength % 8 !== 0 || headerLength > Math.min(clusterSize, bytes.length)) {
      throw new Qcow2FormatError(
        'header_length',
        `${headerLength} must be a multiple of 8 in [${V3_MIN_HEADER_LENGTH}, ${Math.min(clusterSize, bytes.length)}]`,
        { value: headerLength },
      );
    }
    // Additional fields are present only when header_length covers them (spec: "Additional fields").
    if (headerLength > 104) compressionType = view.getUint8(104);
    const typeBit = (incompatibleFeatures & IncompatibleFeature.compressionType) !== 0n;
    if (typeBit && compressionType === 0) {
      throw new Qcow2FormatError('compression_type', 'incompatible feature "compression type" is set but compression_type is 0 (zlib)', {
        value: compressionType,
      });
    }
    if (!typeBit && compressionType !== 0) {
      throw new Qcow2FormatError('compression_type', `${compressionType} without the "compression type" incompatible feature bit`, {
        value: compressionType,
      });
    }
  }
  const extendedL2 = (incompatibleFeatures & IncompatibleFeature.extendedL2) !== 0n;
  if (extendedL2 && clusterBits < 14) {
    throw new Qcow2FormatError('cluster_bits', `${clusterBits} is below 14, the minimum with extended L2 entries`, { value: clusterBits });
  }

  // Header extensions sit between the header and the end of the first
  // cluster (or the backing file name, which the spec puts after them).
  let extensionsEnd = Math.min(clusterSize, bytes.length);
  if (backingFileOffset > headerLength && backingFileOffset < extensionsEnd) extensionsEnd = backingFileOffset;
  let backingFormat: string | undefined;
  let externalDataFile: string | undefined;
  let hasEncryptionHeader = false;
  const featureNames = new Map<string, string>();
  let at = headerLength;
  for (;;) {
    if (at + 8 > extensionsEnd) {
      // Images whose extension area runs into the end of the cluster without
      // an end marker are accepted (QEMU stops at the end too).
      break;
    }
    const type = view.getUint32(at);
    const length = view.getUint32(at + 4);
    if (type === HeaderExtensionType.end) break;
    const dataStart = at + 8;
    if (length > extensionsEnd - dataStart) {
      throw new Qcow2FormatError(
        'header_extension',
        `extension ${hex(type)} at ${at} claims ${length} bytes, past the end of the header area (${extensionsEnd})`,
        { type: hex(type), length },
      );
    }
    const data = bytes.subarray(dataStart, dataStart + length);
    switch (type) {
      case HeaderExtensionType.backingFormat:
        backingFormat = decodeString(data);
        break;
      case HeaderExtensionType.externalDataFile:
        externalDataFile = decodeString(data);
        break;
      case HeaderExtensionType.fullDiskEncryption:
        hasEncryptionHeader = true;
        break;
      case HeaderExtensionType.featureNameTable:
        for (let entry = 0; entry + 48 <= data.length; entry += 48) {
          const kind = FEATURE_TYPES[data[entry] ?? 255];
          const nameBytes = data.subarray(entry + 2, entry + 48);
          const nul = nameBytes.indexOf(0);
          if (kind !== undefined)
            featureNames.set(`${kind}:${data[entry + 1] ?? 0}`, decodeString(nul < 0 ? nameBytes : nameBytes.subarray(0, nul)));
        }
        break;
      default:
        break; // unknown extensions "can be safely ignored"
    }
    at = dataStart + Math.ceil(length / 8) * 8;
  }

  let backingFile: string | undefined;
  if (backingFileOffset !== 0) {
    if (backingFileSize > MAX_BACKING_NAME) {
      throw new Qcow2FormatError('backing_file_size', `${backingFileSize} exceeds ${MAX_BACKING_NAME} bytes`, { value: backingFileSize });
    }
    if (backingFileOffset + backingFileSize <= bytes.length) {
      backingFile = decodeString(bytes.subarray(backingFileOffset, backingFileOffset + backingFileSize));
    }
  }

  return {
    version,
    clusterBits,
    clusterSize,
    virtualSize,
    cryptMethod,
    cryptMethodValue,
    l1Size,
    l1TableOffset,
    refcountTableOffset,
    refcountTableClusters,
    snapshotCount,
    snapshotsOffset,
    incompatibleFeatures,
    compatibleFeatures,
    autoclearFeatures,
    refcountOrder,
    headerLength,
    compressionType,
    dirty: (incompatibleFeatures & IncompatibleFeature.dirty) !== 0n,
    corrupt: (incompatibleFeatures & IncompatibleFeature.corrupt) !== 0n,
    extendedL2,
    backingFileOffset,
    backingFileSize,
    backingFile,
    backingFormat,
    externalDataFile,
    hasEncryptionHeader,
    featureNames,
  };
}

function featureList(header: Qcow2Header, bits: bigint): string {
  const names: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((bits & (1n << BigInt(bit))) === 0n) continue;
    const name = header.featureNames.get(`incompatible:${bit}`);
    names.push(name === undefined ? `bit ${bit}` : `bit ${bit} (${JSON.stringify(name)})`);
  }
  return names.join(', ');
}

/**
 * Refuses images we cannot turn into a disk on our own: their content depends
 * on another file, a key, or a codec we do not ship. A dirty image is fine to
 * read: dirtiness concerns refcounts, which reading never consults.
 */
export function assertReadable(header: Qcow2Header): void {
  if (header.corrupt) {
    throw new Qcow2FormatError('incompatible_features', 'the corrupt bit is set; repair the image with `qemu-img check -r all` first', {
      value: hex(header.incompatibleFeatures),
    });
  }
  if (header.backingFileOffset !== 0) {
    const name = header.backingFile === undefined ? 'unreadable name' : JSON.stringify(header.backingFile);
    throw new UnsupportedImageError(
      'qcow2',
      'backing_file',
      `image has a backing file (${name}${header.backingFormat === undefined ? '' : `, format ${header.backingFormat}`}); flatten it with \`qemu-img convert -O qcow2\` first`,
      {
        backingFile: header.backingFile,
      },
    );
  }
  if (header.cryptMethod !== 'none' || header.hasEncryptionHeader) {
    throw new UnsupportedImageError('qcow2', 'crypt_method', `image is encrypted (${header.cryptMethod}, ${header.cryptMethodValue})`, {
      value: header.cryptMethodValue,
    });
  }
  if ((header.incompatibleFeatures & IncompatibleFeature.externalDataFile) !== 0n) {
    const name = header.externalDataFile === undefined ? 'name not recorded' : JSON.stringify(header.externalDataFile);
    throw new UnsupportedImageError('qcow2', 'external_data_file', `image keeps its data in an external file (${name})`, {
      dataFile: header.externalDataFile,
    });
  }
  if (header.compressionType !== 0 && header.compressionType !== 1) {
    throw new UnsupportedImageError(
      'qcow2',
      'compression_type',
      `compression type ${header.compressionType} (only 0, zlib/deflate, and 1, zstd, are supported)`,
      {
        value: header.compressionType,
      },
    );
  }
  const unknown = header.incompatibleFeatures & ~KNOWN_INCOMPATIBLE;
  if (unknown !== 0n) {
    throw new UnsupportedImageError('qcow2', 'incompatible_features', `unknown incompatible features: ${featureList(header, unknown)}`, {
      value: hex(header.incompatibleFeatures),
    });
  }
}
