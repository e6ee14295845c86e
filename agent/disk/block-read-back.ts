/**
 * The read-back block digest, taken while the image is still streaming:
 * every time an fdatasync commits an offset, the 4 MiB blocks wholly before
 * it are read back from the target and hashed by the hash pool's worker
 * threads; finish() adds the last blocks after the final fdatasync and
 * combines the block digests in order.
 *
 * Reading a block back once it is committed proves what reading it after
 * the last fdatasync proved: frames arrive in order and never overlap, so
 * nothing this writer does later touches a committed block. What it saves
 * is the pass over the whole image after the stream (and the main thread
 * never hashes). Zero runs the writer skipped on a known-zero target are
 * hashed as zeros without reading, as before; a block that is all skipped
 * zeros has a known digest and costs nothing.
 */
import { combineBlockDigests, DIGEST_BLOCK_BYTES, zeroBlockSha256 } from '../../proto/digest/index.ts';
import type { HashPool } from './hash-pool.ts';
import type { SkippedRanges } from './skipped-ranges.ts';

export class BlockReadBack {
  readonly #pool: HashPool;
  readonly #path: string;
  readonly #imageSize: number;
  readonly #skipped: SkippedRanges;
  readonly #digests: Promise<Uint8Array>[] = [];
  /** Aborted when the writer is abandoned: its queued blocks are dropped. */
  readonly #abandoned = new AbortController();
  /** Start of the first block not yet handed out. */
  #next = 0;

  constructor(pool: HashPool, path: string, imageSize: number, skipped: SkippedRanges) {
    this.#pool = pool;
    this.#path = path;
    this.#imageSize = imageSize;
    this.#skipped = skipped;
  }

  /** Blocks handed to the pool so far. */
  get blocksStarted(): number {
    return this.#digests.length;
  }

  /** Hands out every whole block before `committedOffset` (durable on the target). */
  committed(committedOffset: number): void {
    const upTo = Math.min(committedOffset, this.#imageSize);
    while (this.#next + DIGEST_BLOCK_BYTES <= upTo) this.#start(this.#next + DIGEST_BLOCK_BYTES);
  }

  /** The writer is closed without finishing: blocks not yet hashed are not needed. */
  abandon(): void {
    this.#abandoned.abort(new Error('the image writer was closed'));
  }

  /** After the final fdatasync: the remaining blocks, then the digest. */
  async digest(signal?: AbortSignal): Promise<string> {
    while (this.#next < this.#imageSize) this.#start(Math.min(this.#next + DIGEST_BLOCK_BYTES, this.#imageSize));
    const digests: Uint8Array[] = [];
    for (const pending of this.#digests) {
      signal?.throwIfAborted();
      digests.push(await pending);
    }
    return combineBlockDigests(digests);
  }

  #start(end: number): void {
    const start = this.#next;
    this.#next = end;
    const zeros = this.#skipped.flatWithin(start, end);
    let digest: Promise<Uint8Array>;
    if (end - start === DIGEST_BLOCK_BYTES && zeros.length === 2 && zeros[0] === start && zeros[1] === end) {
      digest = Promise.resolve(zeroBlockSha256());
    } else {
      digest = this.#pool.digest({ kind: 'file', path: this.#path, start, end, zeros }, this.#abandoned.signal);
      // Failures surface in digest(), in order; until then they are not "unhandled".
      digest.catch(() => undefined);
    }
    this.#digests.push(digest);
  }
}
