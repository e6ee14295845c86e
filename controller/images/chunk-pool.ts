/**
 * Reusable read buffers for image sources, so a deploy stream does not
 * allocate (and V8 does not collect) a fresh 1 MiB buffer per frame: major
 * GCs of those buffers were a large share of the controller's stream CPU
 * (docs/performance-notes.md).
 *
 * Each buffer has `FRAME_HEADROOM` spare bytes in front of the image bytes:
 * the deploy stream writes the frame's protobuf header and gRPC's message
 * header there, so a data frame reaches the socket without a copy of its
 * payload (controller/deploy/frame-codec.ts).
 *
 * A chunk is shared by the extents cut from it (data runs between zero
 * runs); it returns to the pool when the source and every such extent have
 * released it. A consumer that never releases (a digest, a test) simply
 * leaves the buffer to the GC: the pool then allocates, as before. The
 * deploy stream does not release a chunk whose frame's call ended before
 * the frame's write came back (part of it may still wait in a socket
 * write): it holds the frame in proto/rpc/write-quarantine.ts instead, and
 * the chunk is never reused.
 */

/**
 * Room for a data frame's header (two tags, an offset varint ≤ 8 bytes below 2^53, a length varint ≤ 5)
 * and gRPC's 5-byte message header in front of it (proto/rpc/in-place-framing.ts).
 */
export const FRAME_HEADROOM = 32;

export class ChunkPool {
  readonly chunkSize: number;
  readonly #free: Uint8Array[] = [];
  readonly #maxFree: number;
  #allocated = 0;

  constructor(chunkSize: number, maxFree = 16) {
    this.chunkSize = chunkSize;
    this.#maxFree = maxFree;
  }

  /** Buffers allocated over the pool's life (a measure of reuse for tests). */
  get allocated(): number {
    return this.#allocated;
  }

  /** A chunk with `refs` holders; its `bytes` has FRAME_HEADROOM spare bytes, then chunkSize for data. */
  acquire(): PooledChunk {
    const buffer = this.#free.pop() ?? this.#allocate();
    return new PooledChunk(this, buffer);
  }

  /** Called by PooledChunk when its last holder let go. */
  recycle(buffer: Uint8Array): void {
    if (this.#free.length < this.#maxFree) this.#free.push(buffer);
  }

  #allocate(): Uint8Array {
    this.#allocated++;
    // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool.
    return Buffer.allocUnsafeSlow(FRAME_HEADROOM + this.chunkSize);
  }
}

export class PooledChunk {
  readonly #pool: ChunkPool;
  readonly buffer: Uint8Array;
  /** Where image bytes start in `buffer`. */
  readonly dataStart = FRAME_HEADROOM;
  #refs = 1;

  constructor(pool: ChunkPool, buffer: Uint8Array) {
    this.#pool = pool;
    this.buffer = buffer;
  }

  /** The data area: `length` bytes after the headroom. */
  data(length: number): Uint8Array {
    return this.buffer.subarray(FRAME_HEADROOM, FRAME_HEADROOM + length);
  }

  /** One more holder (an extent cut from this chunk). */
  retain(): () => void {
    this.#refs++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.release();
    };
  }

  release(): void {
    if (--this.#refs === 0) this.#pool.recycle(this.buffer);
    if (this.#refs < 0) throw new Error('pooled chunk released more often than retained');
  }
}
