/**
 * A BlobStore on local disk: `<root>/sha256/ab/abcdef...`. Uploads are
 * written to `<root>/tmp/` and renamed into place only once complete, hashed
 * and fsynced, so a crash mid-upload leaves at worst a temp file (removed by
 * sweepTemp at start-up) and never a partial blob under a digest. No path is
 * built from anything but a validated hex digest or a random UUID.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ValidationError } from '../errors.ts';
import {
  BlobNotFoundError,
  BlobTooLargeError,
  checkSha256,
  resolveRange,
  type BlobInfo,
  type BlobRange,
  type BlobStore,
  type PutOptions,
} from './blob-store.ts';
import { FileHandleReader, type ClosableRandomAccessReader } from './random-access.ts';
import { isNotFound, sweepStaleParts, writeFully } from './blob-files.ts';

// Callers that caught the limit error from here keep importing it from here.
export { BlobTooLargeError };

async function syncDirectory(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

export class LocalBlobStore implements BlobStore {
  readonly root: string;
  readonly #blobDir: string;
  readonly #tmpDir: string;

  constructor(root: string) {
    this.root = root;
    this.#blobDir = join(root, 'sha256');
    this.#tmpDir = join(root, 'tmp');
  }

  #path(sha256: string): string {
    checkSha256(sha256);
    return join(this.#blobDir, sha256.slice(0, 2), sha256);
  }

  async put(body: AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<BlobInfo> {
    if (options.expectedSha256 !== undefined) checkSha256(options.expectedSha256);
    await mkdir(this.#tmpDir, { recursive: true });
    const tmpPath = join(this.#tmpDir, `${randomUUID()}.part`);
    const handle = await open(tmpPath, 'wx', 0o644);
    const hash = createHash('sha256');
    let size = 0;
    let sha256: string;
    try {
      try {
        for await (const chunk of body) {
          size += chunk.length;
          if (options.maxBytes !== undefined && size > options.maxBytes) throw new BlobTooLargeError(options.maxBytes);
          hash.update(chunk);
          await writeFully(handle, chunk);
          options.onProgress?.(size);
        }
        // The blob must be durable before its name exists.
        await handle.sync();
      } finally {
        await handle.close();
      }
      sha256 = hash.digest('hex');
      if (options.expectedSha256 !== undefined && options.expectedSha256 !== sha256) {
        throw new ValidationError('sha256', `content hashes to ${sha256}, not the expected ${options.expectedSha256}`, {
          expected: options.expectedSha256,
          actual: sha256,
        });
      }
      const finalPath = this.#path(sha256);
      const dir = join(this.#blobDir, sha256.slice(0, 2));
      await mkdir(dir, { recursive: true });
      // Same content, same name: renaming over an existing blob (a concurrent
      // or repeated upload) replaces it with identical bytes atomically.
      await rename(tmpPath, finalPath);
      await syncDirectory(dir);
    } catch (err) {
      await rm(tmpPath, { force: true });
      throw err;
    }
    return { sha256, size };
  }

  async stat(sha256: string): Promise<BlobInfo | undefined> {
    try {
      const st = await stat(this.#path(sha256));
      return { sha256, size: st.size };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.stat(sha256)) !== undefined;
  }

  async openRead(sha256: string, range: BlobRange = { offset: 0 }): Promise<Readable> {
    const info = await this.stat(sha256);
    if (info === undefined) throw new BlobNotFoundError(sha256);
    const { offset, length } = resolveRange(sha256, info.size, range);
    if (length === 0) return Readable.from([]);
    // `end` is inclusive in createReadStream.
    return createReadStream(this.#path(sha256), { start: offset, end: offset + length - 1 });
  }

  async openRandomAccess(sha256: string): Promise<ClosableRandomAccessReader> {
    try {
      return await FileHandleReader.open(this.#path(sha256));
    } catch (err) {
      if (isNotFound(err)) throw new BlobNotFoundError(sha256);
      throw err;
    }
  }

  async delete(sha256: string): Promise<boolean> {
    try {
      await unlink(this.#path(sha256));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** Every stored blob's digest (for garbage collection and audits). */
  async *list(): AsyncGenerator<string> {
    let prefixes: string[];
    try {
      prefixes = await readdir(this.#blobDir);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    for (const prefix of prefixes.sort()) {
      for (const name of (await readdir(join(this.#blobDir, prefix))).sort()) {
        if (/^[0-9a-f]{64}$/.test(name) && name.startsWith(prefix)) yield name;
      }
    }
  }

  /**
   * Removes upload temp files older than `olderThanMs` (left by a crash).
   * Call at start-up; a live upload's temp file is younger than any sane age.
   */
  async sweepTemp(olderThanMs = 60 * 60 * 1000, now = Date.now()): Promise<number> {
    return sweepStaleParts(this.#tmpDir, olderThanMs, now);
  }
}
