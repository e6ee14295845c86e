/**
 * The extent model every image format is read through: an ordered,
 * non-overlapping, gap-free sequence of extents covering [0, virtualSize)
 * (or [fromOffset, virtualSize) when a resumed deploy asks to start later).
 * A data extent carries bytes; a zero extent only a length, so a deploy
 * streams only the blocks that hold data and a hole costs nothing however
 * large it is.
 */
import type { PooledChunk } from './chunk-pool.ts';

export interface DataExtent {
  readonly kind: 'data';
  readonly offset: number;
  /**
   * Owned by the consumer: a source never reuses or mutates it after
   * yielding, unless the extent has `release` and the consumer called it.
   */
  readonly data: Uint8Array;
  /**
   * Bytes right before `data`, in the same buffer, that the consumer may
   * overwrite while it holds the extent (a frame header, so the payload
   * needs no copy). 0 or absent: none.
   */
  readonly headroom?: number;
  /**
   * Hands `data` (and its headroom) back to the source's buffer pool. Call it
   * once nothing reads `data` any more, or never: unreleased buffers are left
   * to the GC.
   */
  readonly release?: () => void;
}

export interface ZeroExtent {
  readonly kind: 'zero';
  readonly offset: number;
  readonly length: number;
}

export type Extent = DataExtent | ZeroExtent;

export type ImageFormat = 'raw' | 'qcow2';

export interface ImageSource {
  readonly format: ImageFormat;
  readonly virtualSize: number;
  /**
   * The image's content from `fromOffset` (default 0) to its end. Sources seek
   * straight to `fromOffset` without reading what lies before it, so resuming
   * a deploy near the end of a large image is cheap.
   */
  extents(fromOffset?: number): AsyncIterable<Extent>;
}

/** Upper bound on one data extent's length, so a consumer's memory stays bounded. */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
/** Zero detection granularity: the page size, and the smallest write a disk benefits from skipping. */
export const DEFAULT_ZERO_BLOCK = 4096;
/** The largest chunk size a source accepts (a data extent is held in memory whole). */
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;

/**
 * A buffer of zeros shared by everyone who needs to feed zeros somewhere
 * (hashing, writing holes on a non-sparse target). Never write into it.
 */
export const SHARED_ZEROS: Uint8Array = new Uint8Array(DEFAULT_CHUNK_SIZE);

export function extentLength(extent: Extent): number {
  return extent.kind === 'data' ? extent.data.length : extent.length;
}

export function extentEnd(extent: Extent): number {
  return extent.offset + extentLength(extent);
}

export function checkChunkSize(chunkSize: number, zeroBlock: number = DEFAULT_ZERO_BLOCK): void {
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 512 || chunkSize > MAX_CHUNK_SIZE) {
    throw new RangeError(`chunk size ${chunkSize} must be an integer in [512, ${MAX_CHUNK_SIZE}]`);
  }
  if (!Number.isSafeInteger(zeroBlock) || zeroBlock < 512 || chunkSize % zeroBlock !== 0) {
    throw new RangeError(`zero block ${zeroBlock} must be an integer >= 512 that divides the chunk size ${chunkSize}`);
  }
}

export function checkFromOffset(fromOffset: number, virtualSize: number): void {
  if (!Number.isSafeInteger(fromOffset) || fromOffset < 0 || fromOffset > virtualSize) {
    throw new RangeError(`fromOffset ${fromOffset} is outside the image [0, ${virtualSize}]`);
  }
}

/** True when every byte is zero; memcmp against the shared zero buffer, a page at a time. */
export function isAllZero(bytes: Uint8Array): boolean {
  return rangeIsZero(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0, bytes.length);
}

function rangeIsZero(view: Buffer, start: number, end: number, bytes: Uint8Array = view): boolean {
  // Data blocks almost always show a non-zero byte at one end: checking those
  // first skips the memcmp for nearly every block of real data.
  if (end > start && (bytes[start] !== 0 || bytes[end - 1] !== 0)) return false;
  for (let pos = start; pos < end; pos += SHARED_ZEROS.length) {
    const stop = Math.min(end, pos + SHARED_ZEROS.length);
    if (view.compare(SHARED_ZEROS, 0, stop - pos, pos, stop) !== 0) return false;
  }
  return true;
}

/**
 * Splits `data` (image bytes at `offset`) into data and zero extents at
 * `block` granularity. Blocks are aligned to the image, not to the buffer, so
 * the split is the same whichever chunk a byte arrives in. Data extents are
 * views into `data`, so the caller must hand over a buffer it won't reuse.
 */
export function* splitZeroBlocks(offset: number, data: Uint8Array, block: number = DEFAULT_ZERO_BLOCK, pooled?: Pooled): Generator<Extent> {
  let runStart = 0;
  let runIsZero: boolean | undefined;
  let pos = 0;
  const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const dataExtent = (start: number, end: number): DataExtent => {
    const extent = { kind: 'data' as const, offset: offset + start, data: data.subarray(start, end) };
    if (pooled === undefined) return extent;
    // Before the first run lies the chunk's headroom; before any other data
    // run lies a zero run, whose bytes nobody reads once it is a length (and
    // the headroom too when that zero run starts the chunk).
    const headroom = start - zeroRunStart + (zeroRunStart === 0 ? pooled.headroom : 0);
    return { ...extent, headroom, release: pooled.chunk.retain() };
  };
  let zeroRunStart = 0;
  while (pos < data.length) {
    const blockEnd = Math.min(data.length, pos + block - ((offset + pos) % block));
    const zero = rangeIsZero(view, pos, blockEnd, data);
    if (runIsZero !== undefined && zero !== runIsZero) {
      if (runIsZero) zeroRunStart = runStart;
      yield runIsZero ? { kind: 'zero', offset: offset + runStart, length: pos - runStart } : dataExtent(runStart, pos);
      runStart = pos;
    }
    runIsZero = zero;
    pos = blockEnd;
  }
  if (runIsZero === undefined) return;
  yield runIsZero ? { kind: 'zero', offset: offset + runStart, length: data.length - runStart } : dataExtent(runStart, data.length);
}

/** A pooled chunk the data came from, and how many spare bytes precede the data in it. */
export interface Pooled {
  readonly chunk: PooledChunk;
  readonly headroom: number;
}

/**
 * Merges adjacent zero extents (so a hole spanning many clusters or chunks is
 * one extent) and drops empty ones. Data extents pass through untouched: they
 * are already bounded by the source's chunk size.
 */
export async function* mergeZeros(source: Iterable<Extent> | AsyncIterable<Extent>): AsyncGenerator<Extent> {
  let pendingOffset = 0;
  let pendingLength = 0;
  for await (const extent of source) {
    if (extentLength(extent) === 0) continue;
    if (extent.kind === 'zero') {
      if (pendingLength > 0 && pendingOffset + pendingLength === extent.offset) {
        pendingLength += extent.length;
        continue;
      }
      if (pendingLength > 0) yield { kind: 'zero', offset: pendingOffset, length: pendingLength };
      pendingOffset = extent.offset;
      pendingLength = extent.length;
      continue;
    }
    if (pendingLength > 0) {
      yield { kind: 'zero', offset: pendingOffset, length: pendingLength };
      pendingLength = 0;
    }
    yield extent;
  }
  if (pendingLength > 0) yield { kind: 'zero', offset: pendingOffset, length: pendingLength };
}

/** Cuts one data buffer into extents of at most `chunkSize` bytes (views, no copies). */
export function* chunkData(offset: number, data: Uint8Array, chunkSize: number, pooled?: Pooled): Generator<DataExtent> {
  for (let pos = 0; pos < data.length; pos += chunkSize) {
    const extent = { kind: 'data' as const, offset: offset + pos, data: data.subarray(pos, Math.min(data.length, pos + chunkSize)) };
    // Only the first piece has spare bytes in front: the others follow data still in use.
    yield pooled === undefined ? extent : { ...extent, headroom: pos === 0 ? pooled.headroom : 0, release: pooled.chunk.retain() };
  }
}
