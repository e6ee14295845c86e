/**
 * Where a zstd frame ends (RFC 8878 section 3.1), without decoding it. A
 * qcow2 compressed cluster's descriptor counts whole 512-byte sectors, so
 * the bytes after the last frame are whatever follows in the file; QEMU
 * (block/qcow2-threads.c) decodes frame after frame until it has one
 * cluster and ignores the rest. Node's one-shot zstd decoder fails on those
 * trailing bytes, so the reader hands it exactly the frames it needs.
 *
 * Pure: bytes in, a length or a typed error out.
 */
import { Qcow2FormatError } from '../errors.ts';

const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames: magic 0x184D2A50..0x184D2A5F, a 4-byte size, then that many bytes. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
const BLOCK_HEADER = 3;
const RLE_BLOCK = 1;
const RESERVED_BLOCK = 3;

export interface ZstdFrame {
  /** Bytes the frame occupies from where it starts. */
  readonly length: number;
  /** Skippable frames carry no content. */
  readonly skippable: boolean;
}

function fail(cluster: number, message: string): Qcow2FormatError {
  return new Qcow2FormatError('compressed_cluster', `guest cluster ${cluster}: zstd ${message}`, { cluster });
}

/** The frame starting at `at` in `bytes`; refuses a frame that runs past the end of `bytes`. */
export function zstdFrameAt(bytes: Uint8Array, at: number, cluster = 0): ZstdFrame {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (end: number, what: string): void => {
    if (end > bytes.length) throw fail(cluster, `${what} at byte ${at} runs past the compressed data (${bytes.length} bytes)`);
  };
  need(at + 4, 'frame magic');
  const magic = view.getUint32(at, true);
  if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
    need(at + 8, 'skippable frame header');
    const length = 8 + view.getUint32(at + 4, true);
    need(at + length, 'skippable frame');
    return { length, skippable: true };
  }
  if (magic !== ZSTD_MAGIC) throw fail(cluster, `frame at byte ${at} has magic 0x${magic.toString(16)}, not 0x${ZSTD_MAGIC.toString(16)}`);
  need(at + 5, 'frame header');
  const descriptor = view.getUint8(at + 4);
  if ((descriptor & 0x08) !== 0) throw fail(cluster, `frame at byte ${at} sets the reserved descriptor bit`);
  const singleSegment = (descriptor & 0x20) !== 0;
  const fcsFlag = descriptor >>> 6;
  const dictionaryBytes = [0, 1, 2, 4][descriptor & 0x03] as number;
  const contentSizeBytes = fcsFlag === 0 ? (singleSegment ? 1 : 0) : 2 ** fcsFlag;
  let pos = at + 5 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes;
  for (;;) {
    need(pos + BLOCK_HEADER, 'block header');
    const header = view.getUint8(pos) | (view.getUint8(pos + 1) << 8) | (view.getUint8(pos + 2) << 16);
    const last = (header & 1) !== 0;
    const type = (header >>> 1) & 3;
    const size = header >>> 3;
    if (type === RESERVED_BLOCK) throw fail(cluster, `block at byte ${pos} has the reserved block type`);
    pos += BLOCK_HEADER + (type === RLE_BLOCK ? 1 : size);
    need(pos, 'block');
    if (last) break;
  }
  if ((descriptor & 0x04) !== 0) {
    pos += 4; // content checksum
    need(pos, 'content checksum');
  }
  return { length: pos - at, skippable: false };
}
