/**
 * A raw disk image as an ImageSource: the file's bytes are the disk's bytes.
 * It is read in chunks, and runs of all-zero blocks inside each chunk become
 * zero extents, so a raw image full of holes streams as cheaply as a qcow2.
 * Chunks are read into pooled buffers (chunk-pool.ts) that come back when
 * the consumer releases the extents cut from them.
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
import { ChunkPool, FRAME_HEADROOM } from './chunk-pool.ts';
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
  readonly #pool: ChunkPool;

  constructor(reader: RandomAccessReader, options: RawImageOptions = {}) {
    this.#chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.#zeroBlock = options.zeroBlock ?? DEFAULT_ZERO_BLOCK;
    checkChunkSize(this.#chunkSize, this.#zeroBlock);
    this.#reader = reader;
    this.virtualSize = reader.size;
    this.#pool = new ChunkPool(this.#chunkSize);
  }

  /** Read buffers allocated so far (the rest were reused). */
  get buffersAllocated(): number {
    return this.#pool.allocated;
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
      const wanted = chunkEnd - position;
      const chunk = this.#reader.readInto ? this.#pool.acquire() : undefined;
      try {
        const bytes = chunk ? chunk.data(wanted) : await this.#reader.read(position, wanted);
        const got = chunk && this.#reader.readInto ? await this.#reader.readInto(position, bytes) : bytes.length;
        if (got !== wanted) {
          throw new ImageFormatError('raw', 'size', `file shrank while being read: wanted ${wanted} bytes at ${position}, got ${got}`, {
            position,
          });
        }
        yield* splitZeroBlocks(position, bytes, this.#zeroBlock, chunk ? { chunk, headroom: FRAME_HEADROOM } : undefined);
      } finally {
        // The extents cut from the chunk hold their own references.
        chunk?.release();
      }
      position = chunkEnd;
    }
  }
}
