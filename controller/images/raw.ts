/**
 * A raw disk image as an ImageSource: the file's bytes are the disk's bytes.
 * It is read in chunks, and runs of all-zero blocks inside each chunk become
 * zero extents, so a raw image full of holes streams as cheaply as a qcow2.
 */
import {
  checkChunkSize,
  checkFromOffset,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_ZERO_BLOCK,
  mergeZeros,
  splitZeroBlocks,
  type Extent,
  type ImageSource,
} from './extents.ts';
import type { RandomAccessReader } from './random-access.ts';
import { ImageFormatError } from './errors.ts';

export interface RawImageOptions {
  /** Largest data extent and the read size (default 1 MiB). */
  readonly chunkSize?: number;
  /** Zero-detection granularity (default 4 KiB); must divide chunkSize. */
  readonly zeroBlock?: number;
}

export class RawImage implements ImageSource {
  readonly format = 'raw' as const;
  readonly virtualSize: number;
  readonly #reader: RandomAccessReader;
  readonly #chunkSize: number;
  readonly #zeroBlock: number;

  constructor(reader: RandomAccessReader, options: RawImageOptions = {}) {
    this.#chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.#zeroBlock = options.zeroBlock ?? DEFAULT_ZERO_BLOCK;
    checkChunkSize(this.#chunkSize, this.#zeroBlock);
    this.#reader = reader;
    this.virtualSize = reader.size;
  }

  extents(fromOffset = 0): AsyncIterable<Extent> {
    checkFromOffset(fromOffset, this.virtualSize);
    return mergeZeros(this.#chunks(fromOffset));
  }

  async *#chunks(fromOffset: number): AsyncGenerator<Extent> {
    let position = fromOffset;
    while (position < this.virtualSize) {
      // Reads end on chunk boundaries so that after a resume at an odd offset
      // the reads fall back into alignment with the first one.
      const chunkEnd = Math.min(this.virtualSize, (Math.floor(position / this.#chunkSize) + 1) * this.#chunkSize);
      const bytes = await this.#reader.read(position, chunkEnd - position);
      if (bytes.length !== chunkEnd - position) {
        throw new ImageFormatError('raw', 'size', `file shrank while being read: wanted ${chunkEnd - position} bytes at ${position}, got ${bytes.length}`, { position });
      }
      yield* splitZeroBlocks(position, bytes, this.#zeroBlock);
      position = chunkEnd;
    }
  }
}
