/**
 * The image writer behind WriteImage. It takes the image as ordered frames,
 * `{offset, data}` or `{offset, zeroLength}`, and writes them at their
 * offsets into the target.
 *
 * Zero runs: where the target is known to read as zeros (`knownZeroFrom`:
 * a freshly created or truncated sparse file, a device after a verified full
 * erase, or the untouched tail left by an earlier writer in this process),
 * a zero run is skipped. Elsewhere it is written as zeros, in pieces of at
 * most 1 MiB from one shared zero buffer. For regular files we write zeros
 * rather than punching holes: Node has no fallocate(FALLOC_FL_PUNCH_HOLE),
 * and on a block device, where it matters, zeros are what must be written
 * (BLKZEROOUT/BLKDISCARD are ioctls Node cannot issue either).
 *
 * Commit: every `fsyncIntervalBytes` bytes written (64 MiB by default) the
 * writer starts an fdatasync and, when it returns, the committed offset
 * advances to the end of the last frame written before it was started. A committed offset is a promise that every
 * byte of the image before it is on the target; a new writer may resume
 * there (`resumeOffset`) after a broken stream. Bytes after it may or may not
 * be there, so a resumed writer writes the zero runs it is sent unless the
 * caller knows better (`readsAsZerosFrom` of the abandoned writer, when it
 * ran in the same process).
 *
 * Direct I/O: a data frame in aligned memory at an aligned offset (the
 * receive decoder places frames so) is written through a second handle of
 * the target opened with O_DIRECT, past the page cache; everything else, and
 * every frame on a target that refuses O_DIRECT, through the page cache
 * (direct-io.ts). Both land in the same file, so one fdatasync covers both.
 *
 * Pipelining: a frame's write is started and `write()` returns once no more
 * than `maxWritesInFlight` writes (4 by default) are running, so the caller
 * decodes the next frame while the kernel copies this one. Positioned writes
 * do not depend on each other; the writes still in flight are awaited before
 * every fdatasync, so a committed offset still covers only finished writes.
 * A frame's data must therefore stay unchanged until the writer finishes
 * (the stream hands over a fresh buffer per frame). Where the stream is
 * CPU-bound (the 2-core bench machine) it changes nothing; it is for disks
 * whose writes take time of their own.
 *
 * Digest: `finish()` returns the digest (`digestAlgorithm`: a plain
 * sha256, or the 4 MiB block digest of proto/digest/block-sha256.ts) of the
 * target's first `imageSize` bytes. By default it reads them back after the
 * final fdatasync (see hash.ts for what that does and does not prove),
 * except the zero runs this writer skipped: those it hashes as zeros without
 * reading, on the same premise that let it skip them (the target read as
 * zeros there). For a sparse image that is most of it: reading back the
 * holes would cost most of the deploy (docs/performance-notes.md). The read
 * costs one sequential pass over what was written, but it checks what is on
 * the target rather than what we meant to write, and it is the only method
 * that works after a resume: bytes before the resume offset came from
 * another stream, another writer, perhaps another agent process.
 * `digest: 'as-written'` hashes the frames as they pass (zero runs
 * included), which saves the read but trusts the write
 * path; it is refused for a resumed writer.
 *
 * Where the hashing runs: on the hash pool's worker threads (hash-pool.ts),
 * so the main thread only receives and writes. The block digest read back
 * is taken while the image streams: each commit hands the 4 MiB blocks
 * wholly before it to the workers, which read them from the target and hash
 * them (block-read-back.ts); finish() adds the last blocks after the final
 * fdatasync. Frames never touch a committed block again, so this reads what
 * a read after the last fdatasync would, without a pass over the image at
 * the end. As written, frames are copied into reused shared-memory blocks
 * that the workers hash (parallel-block-hasher.ts). A plain sha256 cannot be
 * split into blocks; read back, one worker hashes it in order after the last
 * fdatasync. `hashPool: null` hashes on the main thread instead.
 */
import { createImageHasher, DigestAlgorithm, type ImageHasher } from '../../proto/digest/index.ts';
import { AgentError, DiskTooSmallError, FrameError, TargetIoError } from '../errors.ts';
import { BlockReadBack } from './block-read-back.ts';
import { isDirectAligned, isDirectRefusal, openDirect } from './direct-io.ts';
import { digestOfTarget } from './hash.ts';
import { sharedHashPool, type HashPool } from './hash-pool.ts';
import { ParallelBlockHasher } from './parallel-block-hasher.ts';
import { SkippedRanges } from './skipped-ranges.ts';
import { openTarget, writeFully, writeZeros, type Target } from './target.ts';
import type { FileHandle } from 'node:fs/promises';

export type DigestMethod = 'read-back' | 'as-written';

/** One frame of the image; exactly one of `data` and `zeroLength`, or neither for an empty frame. */
export interface ImageFrame {
  readonly offset: number;
  readonly data?: Uint8Array;
  readonly zeroLength?: number;
  /**
   * Called once the writer no longer reads `data` (its write has finished and
   * write() has returned), so the caller may reuse the buffer. Not called for
   * a frame the writer refused.
   */
  readonly onDone?: () => void;
}

export interface ImageWriterOptions {
  /** Length of the image; frames must end at or before it, and the target must hold it. */
  readonly imageSize: number;
  /** Where this writer starts: 0, or a committed offset of an earlier writer. */
  readonly resumeOffset?: number;
  /** From this offset on the target reads as zeros; omitted when unknown (zero runs are then written). */
  readonly knownZeroFrom?: number;
  /** fdatasync (and advance the committed offset) after this many bytes written. Default 64 MiB. */
  readonly fsyncIntervalBytes?: number;
  readonly digest?: DigestMethod;
  /** What the digest is: a plain sha256 (default) or the 4 MiB block digest. */
  readonly digestAlgorithm?: DigestAlgorithm;
  /** Size of each zero write. Default and maximum 1 MiB. */
  readonly zeroChunkBytes?: number;
  /** Frame writes running at once (default 4; 1 writes each frame before taking the next). */
  readonly maxWritesInFlight?: number;
  /** Called after each fdatasync with the new committed offset (the gRPC layer acknowledges it). */
  readonly onCommit?: (committedOffset: number) => void | Promise<void>;
  /**
   * Worker threads that hash (default: the process's pool). null hashes on
   * the main thread, as the writer did before the pool existed.
   */
  readonly hashPool?: HashPool | null;
  /**
   * Write aligned data frames with O_DIRECT (direct-io.ts) where the target
   * allows it. Default true; frames that are not aligned, and targets that
   * refuse it, go through the page cache either way.
   */
  readonly directIo?: boolean;
}

export interface WriteResult {
  /** Hex digest of the image's bytes on the target, by digestAlgorithm. */
  readonly sha256: string;
  readonly digestMethod: DigestMethod;
  readonly digestAlgorithm: DigestAlgorithm;
  readonly committedOffset: number;
  /** Bytes this writer put on the target: data and written zeros. */
  readonly bytesWritten: number;
  /** Zero bytes it skipped because the target already read as zeros. */
  readonly zeroBytesSkipped: number;
  /** Of bytesWritten, those written with O_DIRECT (past the page cache). */
  readonly directBytes: number;
}

export const DEFAULT_FSYNC_INTERVAL_BYTES = 64 * 1024 * 1024;

function checkOffset(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new AgentError('invalid-argument', `${name} must be a non-negative integer, got ${value}`, { [name]: value });
}

export class ImageWriter {
  readonly target: Target;
  readonly imageSize: number;
  readonly resumeOffset: number;
  readonly digestMethod: DigestMethod;
  readonly digestAlgorithm: DigestAlgorithm;
  readonly #fsyncIntervalBytes: number;
  readonly #zeroChunkBytes: number;
  readonly #onCommit: ((committedOffset: number) => void | Promise<void>) | undefined;
  readonly #asWritten: ImageHasher | undefined;
  /** The as-written block digest, hashed by the pool's workers. */
  readonly #asWrittenParallel: ParallelBlockHasher | undefined;
  /** The read-back block digest, read and hashed by the pool's workers as commits land. */
  readonly #readBack: BlockReadBack | undefined;
  readonly #pool: HashPool | undefined;
  readonly #ownsTarget: boolean;
  readonly #maxWritesInFlight: number;
  /** Frame writes started and not yet awaited; each settles without rejecting (see #issue). */
  readonly #writesInFlight: Promise<void>[] = [];
  #writeError: unknown;
  /** Zero runs this writer left to the target's known zeros: the read-back digest does not read them. */
  readonly #skipped = new SkippedRanges();
  #knownZeroFrom: number | undefined;
  #nextOffset: number;
  #committedOffset: number;
  #lastFrameOffset: number;
  #highWaterOffset: number;
  #bytesSinceSync = 0;
  #bytesWritten = 0;
  #zeroBytesSkipped = 0;
  #directBytes = 0;
  /** The target opened again with O_DIRECT (null inside: refused): opened at the first aligned frame; null when off. */
  #direct: Promise<FileHandle | null> | null | undefined;
  /** The same open, kept to close the handle after direct I/O was turned off. */
  #directOpened: Promise<FileHandle | null> | undefined;
  #busy = false;
  #finished = false;
  /** The fdatasync in flight, if any (at most one), and the first one that failed. */
  #pendingSync: Promise<void> | undefined;
  #syncError: unknown;

  /**
   * Checks everything that can be checked before a byte is written: the
   * image fits the target, the resume offset lies within the image, the
   * digest method can work. Use `openImageWriter` to open a path.
   */
  constructor(target: Target, options: ImageWriterOptions, ownsTarget = false) {
    const resumeOffset = options.resumeOffset ?? 0;
    checkOffset('imageSize', options.imageSize);
    checkOffset('resumeOffset', resumeOffset);
    if (options.knownZeroFrom !== undefined) checkOffset('knownZeroFrom', options.knownZeroFrom);
    if (options.imageSize > target.size) throw new DiskTooSmallError(target.path, target.size, options.imageSize);
    if (resumeOffset > options.imageSize) {
      throw new AgentError('out-of-range', `resume offset ${resumeOffset} lies past the image end ${options.imageSize}`, {
        resumeOffset,
        imageSize: options.imageSize,
      });
    }
    const digestMethod = options.digest ?? 'read-back';
    if (digestMethod === 'as-written' && resumeOffset > 0) {
      throw new AgentError(
        'failed-precondition',
        `an as-written digest needs every byte from offset 0; this writer resumes at ${resumeOffset}: use read-back`,
        { resumeOffset },
      );
    }
    const interval = options.fsyncIntervalBytes ?? DEFAULT_FSYNC_INTERVAL_BYTES;
    if (!Number.isSafeInteger(interval) || interval <= 0)
      throw new AgentError('invalid-argument', `fsyncIntervalBytes must be positive, got ${interval}`);
    this.target = target;
    this.imageSize = options.imageSize;
    this.resumeOffset = resumeOffset;
    this.digestMethod = digestMethod;
    this.digestAlgorithm = options.digestAlgorithm ?? DigestAlgorithm.sha256;
    this.#fsyncIntervalBytes = interval;
    this.#zeroChunkBytes = options.zeroChunkBytes ?? 1024 * 1024;
    this.#onCommit = options.onCommit;
    this.#pool = options.hashPool === null ? undefined : (options.hashPool ?? sharedHashPool());
    const blocksInPool = this.#pool !== undefined && this.digestAlgorithm === DigestAlgorithm.blocks;
    this.#asWrittenParallel = digestMethod === 'as-written' && blocksInPool && this.#pool ? new ParallelBlockHasher(this.#pool) : undefined;
    this.#asWritten =
      digestMethod === 'as-written' && this.#asWrittenParallel === undefined ? createImageHasher(this.digestAlgorithm) : undefined;
    this.#readBack =
      digestMethod === 'read-back' && blocksInPool && this.#pool
        ? new BlockReadBack(this.#pool, target.path, options.imageSize, this.#skipped)
        : undefined;
    this.#ownsTarget = ownsTarget;
    this.#maxWritesInFlight = Math.max(1, Math.floor(options.maxWritesInFlight ?? 4));
    this.#knownZeroFrom = options.knownZeroFrom;
    if (options.directIo === false) this.#direct = null;
    this.#nextOffset = resumeOffset;
    this.#committedOffset = resumeOffset;
    this.#lastFrameOffset = resumeOffset;
    this.#highWaterOffset = resumeOffset;
  }

  /** Every image byte before this is durable on the target. */
  get committedOffset(): number {
    return this.#committedOffset;
  }

  /** Where the next frame must start. */
  get nextOffset(): number {
    return this.#nextOffset;
  }

  /**
   * From where the target still reads as zeros, for a writer that resumes
   * after this one in the same process; undefined when unknown. A frame whose
   * write failed half-way counts as written in full.
   */
  get readsAsZerosFrom(): number | undefined {
    return this.#knownZeroFrom === undefined ? undefined : Math.max(this.#knownZeroFrom, this.#highWaterOffset);
  }

  async write(frame: ImageFrame): Promise<void> {
    const { offset, length, data } = this.#check(frame);
    if (length === 0) return;
    this.#busy = true;
    try {
      this.#highWaterOffset = Math.max(this.#highWaterOffset, offset + length);
      if (data) {
        // Both the write and this call (the as-written hashers read data) must be done with the bytes.
        let users = frame.onDone ? 2 : 0;
        const doneWith = (): void => {
          if (--users === 0) frame.onDone?.();
        };
        const written = this.#writeData(data, offset);
        this.#issue(frame.onDone ? written.finally(doneWith) : written);
        try {
          this.#asWritten?.update(data);
          if (this.#asWrittenParallel) await this.#asWrittenParallel.update(data);
        } finally {
          if (frame.onDone) doneWith();
        }
        this.#wrote(length);
      } else {
        // Only the part of the run before knownZeroFrom needs writing.
        const zeroFrom = this.#knownZeroFrom ?? Number.POSITIVE_INFINITY;
        const toWrite = Math.max(0, Math.min(length, zeroFrom - offset));
        if (toWrite > 0) this.#issue(writeZeros(this.target.handle, offset, toWrite, this.#zeroChunkBytes));
        this.#wrote(toWrite);
        this.#zeroBytesSkipped += length - toWrite;
        if (toWrite < length) this.#skipped.add(offset + toWrite, offset + length);
        this.#asWritten?.zeros(length);
        if (this.#asWrittenParallel) await this.#asWrittenParallel.zeros(length);
      }
      this.#lastFrameOffset = offset;
      this.#nextOffset = offset + length;
      while (this.#writesInFlight.length >= this.#maxWritesInFlight) await this.#writesInFlight.shift();
      this.#throwIfWriteFailed();
      if (this.#bytesSinceSync >= this.#fsyncIntervalBytes) {
        await this.#drainWrites();
        await this.#startSync();
      }
    } finally {
      this.#busy = false;
    }
  }

  /**
   * Ends the image: the last fdatasync, the committed offset at the image
   * end, and the digest. Fails if frames are missing.
   */
  async finish(options: { signal?: AbortSignal } = {}): Promise<WriteResult> {
    if (this.#finished) throw new FrameError('after-finish', 'the image is already finished');
    if (this.#busy) throw new AgentError('failed-precondition', 'finish() while a frame is being written');
    if (this.#nextOffset !== this.imageSize) {
      throw new AgentError('failed-precondition', `image incomplete: frames end at ${this.#nextOffset} of ${this.imageSize}`, {
        nextOffset: this.#nextOffset,
        imageSize: this.imageSize,
      });
    }
    this.#busy = true;
    try {
      await this.#drainWrites();
      await this.#pendingSync;
      this.#throwIfSyncFailed();
      await this.#sync(this.#nextOffset);
      this.#finished = true;
      const sha256 = await this.#digest(options.signal);
      return {
        sha256,
        digestMethod: this.digestMethod,
        digestAlgorithm: this.digestAlgorithm,
        committedOffset: this.#committedOffset,
        bytesWritten: this.#bytesWritten,
        zeroBytesSkipped: this.#zeroBytesSkipped,
        directBytes: this.#directBytes,
      };
    } finally {
      this.#busy = false;
      if (this.#ownsTarget) await this.close();
      else await this.#closeDirect();
    }
  }

  async #digest(signal: AbortSignal | undefined): Promise<string> {
    if (this.#asWritten) return this.#asWritten.digest();
    if (this.#asWrittenParallel) return this.#asWrittenParallel.digest();
    if (this.#readBack) return this.#readBack.digest(signal);
    if (this.#pool) return this.#pool.fileSha256(this.target.path, this.imageSize, this.#skipped.flatWithin(0, this.imageSize), signal);
    return digestOfTarget(this.target.handle, this.imageSize, {
      algorithm: this.digestAlgorithm,
      zeroRanges: this.#skipped.ranges(),
      ...(signal ? { signal } : {}),
    });
  }

  /**
   * Makes every byte written so far durable and commits it (one fdatasync),
   * without finishing the image: after a broken stream the next one, which
   * continues from this agent's committed offset, has nothing to send again
   * but the frames that never reached the writer. If a write or the sync
   * failed, the committed offset stays where it was and this throws.
   */
  async commitWritten(): Promise<number> {
    if (this.#finished) return this.#committedOffset;
    if (this.#busy) throw new AgentError('failed-precondition', 'commitWritten() while a frame is being written');
    this.#busy = true;
    try {
      await this.#drainWrites();
      await this.#pendingSync;
      this.#throwIfSyncFailed();
      await this.#sync(this.#nextOffset);
    } finally {
      this.#busy = false;
    }
    return this.#committedOffset;
  }

  /** Closes the target if this writer opened it. Uncommitted bytes are left as they are. */
  async close(): Promise<void> {
    if (!this.#finished) this.#readBack?.abandon();
    await Promise.all(this.#writesInFlight.splice(0));
    await this.#pendingSync;
    await this.#closeDirect();
    if (this.#ownsTarget) await this.target.handle.close().catch(() => undefined);
  }

  /**
   * Starts the write of a data frame: with O_DIRECT when the frame is aligned
   * and the target takes it, else through the page cache. A direct write the
   * kernel refuses for alignment is done again through the page cache, and
   * direct I/O is off for the rest of the image.
   */
  #writeData(data: Uint8Array, offset: number): Promise<void> {
    if (this.#direct === null || !isDirectAligned(data, offset)) return writeFully(this.target.handle, data, offset);
    if (this.#direct === undefined) this.#direct = this.#directOpened = openDirect(this.target.path);
    return this.#direct.then(async (direct) => {
      if (!direct || this.#direct === null) return writeFully(this.target.handle, data, offset);
      try {
        await writeFully(direct, data, offset);
        this.#directBytes += data.length;
      } catch (error) {
        if (!isDirectRefusal(error)) throw error;
        this.#direct = null;
        await writeFully(this.target.handle, data, offset);
      }
    });
  }

  async #closeDirect(): Promise<void> {
    const opened = this.#directOpened;
    this.#direct = null;
    this.#directOpened = undefined;
    await (await opened)?.close().catch(() => undefined);
  }

  #check(frame: ImageFrame): { offset: number; length: number; data: Uint8Array | undefined } {
    this.#throwIfWriteFailed();
    this.#throwIfSyncFailed();
    if (this.#finished) throw new FrameError('after-finish', 'frame after the image was finished', { offset: frame.offset });
    if (this.#busy) throw new AgentError('failed-precondition', 'frames must be written one at a time (await each write)');
    const { offset } = frame;
    const data = frame.data !== undefined && frame.data.length > 0 ? frame.data : undefined;
    const zeroLength = frame.zeroLength ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(zeroLength) || zeroLength < 0) {
      throw new FrameError('malformed', `frame offset ${offset} / zero length ${zeroLength} must be non-negative integers`, {
        offset,
        zeroLength,
      });
    }
    if (data && zeroLength > 0) throw new FrameError('malformed', `frame at ${offset} has both data and a zero length`, { offset });
    const length = data ? data.length : zeroLength;
    const context = { offset, length, expected: this.#nextOffset };
    if (offset < this.#lastFrameOffset) {
      throw new FrameError(
        'out-of-order',
        `frame at ${offset} comes after a frame at ${this.#lastFrameOffset}; frames must be in order`,
        context,
      );
    }
    if (offset < this.#nextOffset)
      throw new FrameError('overlap', `frame at ${offset} overlaps the previous frame, which ends at ${this.#nextOffset}`, context);
    if (offset > this.#nextOffset) {
      // A gap would leave whatever the target held there inside the image.
      throw new FrameError('gap', `frame at ${offset} leaves a gap after ${this.#nextOffset}; send holes as zero runs`, context);
    }
    if (offset + length > this.imageSize) {
      throw new FrameError('past-image-end', `frame [${offset}, ${offset + length}) runs past the image end ${this.imageSize}`, {
        ...context,
        imageSize: this.imageSize,
      });
    }
    return { offset, length, data };
  }

  /** Tracks a started write; its failure is kept and thrown by the next call into the writer. */
  #issue(write: Promise<void>): void {
    this.#writesInFlight.push(
      write.catch((error: unknown) => {
        this.#writeError ??= error;
      }),
    );
  }

  async #drainWrites(): Promise<void> {
    await Promise.all(this.#writesInFlight.splice(0));
    this.#throwIfWriteFailed();
  }

  #throwIfWriteFailed(): void {
    if (this.#writeError !== undefined) throw this.#writeError;
  }

  #wrote(bytes: number): void {
    this.#bytesWritten += bytes;
    this.#bytesSinceSync += bytes;
  }

  /**
   * Starts an fdatasync without waiting for it, so frames keep flowing while
   * the kernel flushes: fdatasync makes durable every write that completed
   * before it was called, so when it returns the offset taken now is
   * committed. At most one sync is in flight; a second interval waits for
   * the first, which bounds the dirty data to about two intervals.
   * Overlapping measured faster than syncing in turn
   * (docs/performance-notes.md).
   */
  async #startSync(): Promise<void> {
    await this.#pendingSync;
    this.#throwIfSyncFailed();
    this.#bytesSinceSync = 0;
    const upTo = this.#nextOffset;
    this.#pendingSync = this.#sync(upTo).then(
      () => {
        this.#pendingSync = undefined;
      },
      (error: unknown) => {
        this.#pendingSync = undefined;
        this.#syncError ??= error;
      },
    );
  }

  async #sync(upTo: number): Promise<void> {
    await this.target.handle.datasync();
    if (upTo > this.#committedOffset) {
      this.#committedOffset = upTo;
      this.#readBack?.committed(upTo);
      await this.#onCommit?.(upTo);
    }
  }

  #throwIfSyncFailed(): void {
    if (this.#syncError !== undefined) {
      throw new TargetIoError(
        `fdatasync of ${this.target.path} failed: ${(this.#syncError as Error).message}`,
        { path: this.target.path, committedOffset: this.#committedOffset },
        this.#syncError,
      );
    }
  }
}

/**
 * Opens `path` for writing (never creating or truncating it) and returns a
 * writer that closes it when finished. Size checks happen here, before any
 * write: a target too small throws DiskTooSmallError and is left unchanged.
 */
export async function openImageWriter(path: string, options: ImageWriterOptions & { readonly sysRoot?: string }): Promise<ImageWriter> {
  const target = await openTarget(path, { write: true, ...(options.sysRoot ? { sysRoot: options.sysRoot } : {}) });
  try {
    return new ImageWriter(target, options, true);
  } catch (error) {
    await target.handle.close();
    throw error;
  }
}
