/**
 * sha256 of the first `length` bytes of a target, read back from it in
 * fixed-size chunks through one reused buffer: memory stays at one chunk
 * whatever the image size.
 *
 * What "read back" proves: the bytes come from the target after fdatasync,
 * through the kernel's page cache. That catches mistakes in the agent's
 * write path (wrong positions, lost frames, a resume from the wrong offset,
 * bytes a previous stream left behind) and anything corrupted on the way in.
 * It does not prove that the medium kept the bytes: pages still cached are
 * served from memory. Node offers neither O_DIRECT-aligned buffers nor
 * posix_fadvise(DONTNEED)/BLKFLSBUF; a deploy that must catch a lying disk
 * can drop the caches (`echo 1 > /proc/sys/vm/drop_caches` in the ramdisk)
 * before hashing; we leave that to the caller.
 */
import { createImageHasher, DigestAlgorithm } from '../../proto/digest/index.ts';
import type { FileHandle } from 'node:fs/promises';
import { TargetIoError } from '../errors.ts';
import type { ByteRange } from './skipped-ranges.ts';
import { readFully } from './target.ts';

export const HASH_CHUNK_BYTES = 4 * 1024 * 1024;

export interface HashOptions {
  readonly chunkBytes?: number;
  readonly signal?: AbortSignal;
}

export interface TargetHashOptions extends HashOptions {
  /** Default: a plain sha256. */
  readonly algorithm?: DigestAlgorithm;
  /** Sorted, disjoint ranges known to read as zeros: hashed as zeros, not read. */
  readonly zeroRanges?: Iterable<ByteRange>;
}

/** Hex sha256 of bytes [0, length) of the open target. */
export function sha256OfTarget(handle: FileHandle, length: number, options: TargetHashOptions = {}): Promise<string> {
  return digestOfTarget(handle, length, { ...options, algorithm: DigestAlgorithm.sha256 });
}

/** Hex digest of bytes [0, length) of the open target, by options.algorithm. */
export async function digestOfTarget(handle: FileHandle, length: number, options: TargetHashOptions = {}): Promise<string> {
  const hash = createImageHasher(options.algorithm ?? DigestAlgorithm.sha256);
  const update = (chunk: Uint8Array): void => {
    hash.update(chunk);
  };
  // One read buffer for every stretch between zero ranges.
  const buffer = new Uint8Array(Math.max(1, Math.min(options.chunkBytes ?? HASH_CHUNK_BYTES, length)));
  const reading = { ...options, buffer };
  let position = 0;
  for (const range of options.zeroRanges ?? []) {
    const start = Math.min(range.start, length);
    const end = Math.min(range.end, length);
    if (start < position || end < start) throw new RangeError(`zero range [${range.start}, ${range.end}) is out of order`);
    for await (const chunk of readTargetChunks(handle, position, start - position, reading)) update(chunk);
    options.signal?.throwIfAborted();
    hash.zeros(end - start);
    position = end;
  }
  for await (const chunk of readTargetChunks(handle, position, length - position, reading)) update(chunk);
  return hash.digest();
}

/**
 * Bytes [offset, offset + length) of the target in chunks (what ReadImage
 * streams). The chunk is valid only until the next iteration: callers that
 * keep it must copy it. Fails if the target ends before offset + length.
 */
export async function* readTargetChunks(
  handle: FileHandle,
  offset: number,
  length: number,
  options: HashOptions & { readonly buffer?: Uint8Array } = {},
): AsyncGenerator<Uint8Array> {
  const buffer = options.buffer ?? new Uint8Array(Math.max(1, Math.min(options.chunkBytes ?? HASH_CHUNK_BYTES, length)));
  for (let done = 0; done < length; ) {
    options.signal?.throwIfAborted();
    const want = Math.min(buffer.length, length - done);
    const slice = buffer.subarray(0, want);
    const got = await readFully(handle, slice, offset + done);
    if (got < want)
      throw new TargetIoError(`target ends at ${offset + done + got}, before ${offset + length}`, {
        offset: offset + done + got,
        wanted: offset + length,
      });
    yield slice;
    done += want;
  }
}
