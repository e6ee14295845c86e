/**
 * A local directory of verified blob copies, for a store whose bytes live
 * elsewhere (the JetStream object store): positioned reads (qcow2) and
 * ranges need a file, and a blob is fetched once per controller, not once
 * per deploy. Layout `<root>/sha256/ab/abcdef...`, temp files in `<root>/tmp/`.
 *
 * A copy is used only after it hashed to its name. Hashing a large image on
 * every open would cost seconds, so a verified copy is remembered by its file
 * identity (inode, size, mtime, ctime): anything that rewrites the file
 * changes ctime, and a copy seen for the first time in this process (after a
 * restart) is hashed again. A copy that fails is removed and fetched anew.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Stats } from 'node:fs';
import { BlobCorruptError, BlobTooLargeError, checkSha256, type PutOptions } from './blob-store.ts';
import { isNotFound, sweepStaleParts, writeFully } from './blob-files.ts';

interface FileIdentity {
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

function identityOf(st: Stats): FileIdentity {
  return { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

/** Streams a file through sha256. */
export async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** A file written in the temp directory, hashed on the way in; the caller adopts it into the cache or discards it. */
export interface StagedFile {
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  discard(): Promise<void>;
}

/** Writes `chunk` to the fetched copy; called in order, each awaited (backpressure to the source). */
export type FetchInto = (write: (chunk: Uint8Array) => Promise<void>) => Promise<void>;

export class BlobCache {
  readonly root: string;
  readonly #blobDir: string;
  readonly #tmpDir: string;
  readonly #verified = new Map<string, FileIdentity>();
  /** One fetch or verification per blob at a time; later callers wait for it. */
  readonly #pending = new Map<string, Promise<string>>();
  /** Copies found corrupt or missing and fetched again (for metrics and tests). */
  refetches = 0;

  constructor(root: string) {
    this.root = root;
    this.#blobDir = join(root, 'sha256');
    this.#tmpDir = join(root, 'tmp');
  }

  path(sha256: string): string {
    checkSha256(sha256);
    return join(this.#blobDir, sha256.slice(0, 2), sha256);
  }

  /**
   * Writes a stream to a temp file, hashing it and enforcing the size limit.
   * On failure nothing is left behind.
   */
  async stage(body: AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<StagedFile> {
    await mkdir(this.#tmpDir, { recursive: true });
    const path = join(this.#tmpDir, `${randomUUID()}.part`);
    const handle = await open(path, 'wx', 0o644);
    const hash = createHash('sha256');
    let size = 0;
    try {
      try {
        for await (const chunk of body) {
          size += chunk.length;
          if (options.maxBytes !== undefined && size > options.maxBytes) throw new BlobTooLargeError(options.maxBytes);
          hash.update(chunk);
          await writeFully(handle, chunk);
          options.onProgress?.(size);
        }
      } finally {
        await handle.close();
      }
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
    return { path, sha256: hash.digest('hex'), size, discard: () => rm(path, { force: true }) };
  }

  /** Moves a staged file whose hash is its name into the cache, as verified. */
  async adopt(staged: StagedFile): Promise<string> {
    const finalPath = this.path(staged.sha256);
    await mkdir(join(this.#blobDir, staged.sha256.slice(0, 2)), { recursive: true });
    await rename(staged.path, finalPath);
    this.#verified.set(staged.sha256, identityOf(await stat(finalPath)));
    return finalPath;
  }

  /**
   * The path of a verified copy of `sha256` (`size` bytes): the cached file
   * if it hashes to its name, else a fresh copy written by `fetch` and
   * checked the same way before it is used.
   */
  ensure(sha256: string, size: number, fetch: FetchInto): Promise<string> {
    const finalPath = this.path(sha256);
    const running = this.#pending.get(sha256);
    if (running) return running;
    const work = this.#ensure(sha256, size, finalPath, fetch).finally(() => this.#pending.delete(sha256));
    this.#pending.set(sha256, work);
    return work;
  }

  async #ensure(sha256: string, size: number, finalPath: string, fetch: FetchInto): Promise<string> {
    const current = await this.#identity(finalPath);
    if (current) {
      const known = this.#verified.get(sha256);
      if (known && sameIdentity(known, current) && current.size === size) return finalPath;
      const actual = await hashFile(finalPath);
      if (actual.sha256 === sha256 && actual.size === size) {
        // Identity read before hashing: a write during the hash changes ctime, so it is caught next time.
        this.#verified.set(sha256, current);
        return finalPath;
      }
      this.#verified.delete(sha256);
      await rm(finalPath, { force: true });
      this.refetches++;
    } else if (this.#verified.delete(sha256)) {
      this.refetches++;
    }
    return this.#fetch(sha256, size, fetch);
  }

  async #fetch(sha256: string, size: number, fetch: FetchInto): Promise<string> {
    await mkdir(this.#tmpDir, { recursive: true });
    const path = join(this.#tmpDir, `${randomUUID()}.part`);
    const handle = await open(path, 'wx', 0o644);
    const hash = createHash('sha256');
    let received = 0;
    try {
      try {
        await fetch(async (chunk) => {
          received += chunk.length;
          if (received > size) throw new BlobCorruptError(sha256, `the store sent more than the ${size} bytes it lists`, { size });
          hash.update(chunk);
          await writeFully(handle, chunk);
        });
      } finally {
        await handle.close();
      }
      const actual = hash.digest('hex');
      if (received !== size || actual !== sha256) {
        throw new BlobCorruptError(sha256, `the store's copy hashes to ${actual} (${received} of ${size} bytes)`, {
          size,
          received,
          actual,
        });
      }
      // No fsync: a copy torn by a crash fails verification at its next first use.
      return await this.adopt({ path, sha256, size, discard: async () => undefined });
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
  }

  /** The verified copy's path without fetching, or undefined (serving on while the store is unreachable). */
  async verifiedCopy(sha256: string): Promise<{ path: string; size: number } | undefined> {
    const finalPath = this.path(sha256);
    const known = this.#verified.get(sha256);
    const current = await this.#identity(finalPath);
    return known && current && sameIdentity(known, current) ? { path: finalPath, size: current.size } : undefined;
  }

  /** True when `handle` (opened on the cached path) is still the copy that was verified. */
  async isVerified(sha256: string, handle: FileHandle): Promise<boolean> {
    const known = this.#verified.get(sha256);
    return known !== undefined && sameIdentity(known, identityOf(await handle.stat()));
  }

  async evict(sha256: string): Promise<void> {
    this.#verified.delete(sha256);
    await rm(this.path(sha256), { force: true });
  }

  async #identity(path: string): Promise<FileIdentity | undefined> {
    try {
      return identityOf(await stat(path));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Removes temp files older than `olderThanMs` (left by a crash); call at start-up. */
  async sweepTemp(olderThanMs = 60 * 60 * 1000, now = Date.now()): Promise<number> {
    return sweepStaleParts(this.#tmpDir, olderThanMs, now);
  }

  /** Temp files present now (tests check an aborted upload left none). */
  async tempFiles(): Promise<string[]> {
    try {
      return (await readdir(this.#tmpDir)).filter((n) => n.endsWith('.part'));
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }
}
