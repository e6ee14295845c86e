/**
 * The image digest a deploy checks: sha256 over the sha256 of every 4 MiB
 * block of the image's raw content (the last block may be shorter),
 *
 *   digest = sha256(sha256(block 0) ‖ sha256(block 1) ‖ … )
 *
 * Why not a plain sha256 of the raw content: that one is a single sequential
 * hash over every byte, holes included, so a sparse image (a qcow2 with far
 * more virtual size than data) cost the agent, and the controller at upload,
 * more time hashing zeros than streaming the data (docs/performance-notes.md).
 * Per block, a block of zeros has a known digest, so
 * holes cost nothing; and blocks can be hashed in any order or in parallel.
 *
 * It is part of the wire contract (the controller asks for it in
 * WriteImageStart and the agent reports it), which is why it lives here,
 * where both sides may import it. By hand, on a raw image:
 *
 *   split -b 4M --filter='sha256sum | cut -c1-64 | tr a-f A-F | basenc --base16 -d' image.raw | sha256sum
 */
import { createHash, type Hash } from 'node:crypto';

export const DIGEST_BLOCK_BYTES = 4 * 1024 * 1024;

/** The algorithm names WriteImageStart.digest_algorithm and the acknowledgement carry. */
export const DigestAlgorithm = {
  /** A plain sha256 over the raw content. */
  sha256: 'sha256',
  /** sha256 over the sha256 of every 4 MiB block (this file). */
  blocks: 'sha256-4m-blocks',
} as const;
export type DigestAlgorithm = (typeof DigestAlgorithm)[keyof typeof DigestAlgorithm];

export function isDigestAlgorithm(name: string): name is DigestAlgorithm {
  return name === DigestAlgorithm.sha256 || name === DigestAlgorithm.blocks;
}

/** Something that digests an image in order: its bytes, and runs of zeros it need not be shown. */
export interface ImageHasher {
  readonly algorithm: DigestAlgorithm;
  /** Bytes hashed so far (data and zeros). */
  readonly length: number;
  update(bytes: Uint8Array): void;
  zeros(length: number): void;
  /** Hex digest; the hasher is spent afterwards. */
  digest(): string;
}

const ZERO_PIECE = new Uint8Array(1024 * 1024);
let zeroBlockDigest: Buffer | undefined;

function feedZeros(hash: Hash, length: number): void {
  for (let left = length; left > 0; left -= ZERO_PIECE.length) hash.update(ZERO_PIECE.subarray(0, Math.min(left, ZERO_PIECE.length)));
}

/** The sha256 of one full block of zeros, computed once. */
export function zeroBlockSha256(): Buffer {
  return zeroBlock();
}

/**
 * The block digest from the blocks' own digests, in order: what a hasher
 * that hashed the blocks elsewhere (worker threads) reports.
 */
export function combineBlockDigests(blockDigests: Iterable<Uint8Array>): string {
  const outer = createHash('sha256');
  for (const digest of blockDigests) outer.update(digest);
  return outer.digest('hex');
}

function zeroBlock(): Buffer {
  if (!zeroBlockDigest) {
    const hash = createHash('sha256');
    feedZeros(hash, DIGEST_BLOCK_BYTES);
    zeroBlockDigest = hash.digest();
  }
  return zeroBlockDigest;
}

export class BlockSha256 implements ImageHasher {
  readonly algorithm = DigestAlgorithm.blocks;
  readonly #outer = createHash('sha256');
  /** The hash of the block being filled, created at its first byte. */
  #block: Hash | undefined;
  #inBlock = 0;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  update(bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length; ) {
      const take = Math.min(DIGEST_BLOCK_BYTES - this.#inBlock, bytes.length - done);
      (this.#block ??= createHash('sha256')).update(bytes.subarray(done, done + take));
      done += take;
      this.#advance(take);
    }
  }

  zeros(length: number): void {
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`zero run length ${length} is not a non-negative integer`);
    let left = length;
    while (left > 0) {
      if (this.#inBlock === 0 && left >= DIGEST_BLOCK_BYTES) {
        // Whole blocks of zeros: their digest is known.
        const blocks = Math.floor(left / DIGEST_BLOCK_BYTES);
        const digest = zeroBlock();
        for (let i = 0; i < blocks; i++) this.#outer.update(digest);
        left -= blocks * DIGEST_BLOCK_BYTES;
        this.#length += blocks * DIGEST_BLOCK_BYTES;
        continue;
      }
      const take = Math.min(DIGEST_BLOCK_BYTES - this.#inBlock, left);
      feedZeros((this.#block ??= createHash('sha256')), take);
      left -= take;
      this.#advance(take);
    }
  }

  digest(): string {
    if (this.#inBlock > 0) this.#outer.update(this.#block!.digest());
    this.#block = undefined;
    this.#inBlock = 0;
    return this.#outer.digest('hex');
  }

  #advance(bytes: number): void {
    this.#inBlock += bytes;
    this.#length += bytes;
    if (this.#inBlock === DIGEST_BLOCK_BYTES) {
      this.#outer.update(this.#block!.digest());
      this.#block = undefined;
      this.#inBlock = 0;
    }
  }
}

export class PlainSha256 implements ImageHasher {
  readonly algorithm = DigestAlgorithm.sha256;
  readonly #hash = createHash('sha256');
  #length = 0;

  get length(): number {
    return this.#length;
  }

  update(bytes: Uint8Array): void {
    this.#hash.update(bytes);
    this.#length += bytes.length;
  }

  zeros(length: number): void {
    feedZeros(this.#hash, length);
    this.#length += length;
  }

  digest(): string {
    return this.#hash.digest('hex');
  }
}

export function createImageHasher(algorithm: DigestAlgorithm): ImageHasher {
  return algorithm === DigestAlgorithm.blocks ? new BlockSha256() : new PlainSha256();
}
