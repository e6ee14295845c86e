/**
 * Positioned reads over an image file. The qcow2 reader needs random access
 * (L1 → L2 → data clusters anywhere in the file); putting it behind this small
 * interface lets the fuzz tests run against bytes in memory and lets a blob
 * store hand out readers without exposing paths.
 */
import { open, type FileHandle } from 'node:fs/promises';

export interface RandomAccessReader {
  /** Size of the underlying file in bytes, fixed for the reader's lifetime. */
  readonly size: number;
  /**
   * Reads up to `length` bytes at `position`. Returns fewer bytes only when
   * the read crosses the end of the file (and none at or past it). The
   * returned buffer is the caller's to keep.
   */
  read(position: number, length: number): Promise<Uint8Array>;
  /**
   * Reads into `target` (a pooled buffer) instead of allocating: up to
   * target.length bytes at `position`; returns how many, fewer only at the
   * end of the file.
   */
  readInto?(position: number, target: Uint8Array): Promise<number>;
}

export interface ClosableRandomAccessReader extends RandomAccessReader {
  close(): Promise<void>;
}

function clampLength(size: number, position: number, length: number): number {
  if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`read position ${position} is not a non-negative integer`);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`read length ${length} is not a non-negative integer`);
  return Math.max(0, Math.min(length, size - position));
}

export class BytesReader implements RandomAccessReader {
  readonly #bytes: Uint8Array;
  readonly size: number;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.size = bytes.length;
  }

  read(position: number, length: number): Promise<Uint8Array> {
    const n = clampLength(this.size, position, length);
    return Promise.resolve(this.#bytes.slice(position, position + n));
  }

  readInto(position: number, target: Uint8Array): Promise<number> {
    const n = clampLength(this.size, position, target.length);
    target.set(this.#bytes.subarray(position, position + n));
    return Promise.resolve(n);
  }
}

export class FileHandleReader implements ClosableRandomAccessReader {
  readonly #handle: FileHandle;
  readonly size: number;

  constructor(handle: FileHandle, size: number) {
    this.#handle = handle;
    this.size = size;
  }

  static async open(path: string): Promise<FileHandleReader> {
    const handle = await open(path, 'r');
    try {
      const st = await handle.stat();
      return new FileHandleReader(handle, st.size);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  async read(position: number, length: number): Promise<Uint8Array> {
    const n = clampLength(this.size, position, length);
    const buf = Buffer.allocUnsafe(n);
    const filled = await this.readInto(position, buf);
    return filled === n ? buf : buf.subarray(0, filled);
  }

  async readInto(position: number, target: Uint8Array): Promise<number> {
    const n = clampLength(this.size, position, target.length);
    let filled = 0;
    // A positioned read may return short (signals, large reads); loop until
    // done or the file ends under us (truncated while open).
    while (filled < n) {
      const { bytesRead } = await this.#handle.read(target, filled, n - filled, position + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled;
  }

  close(): Promise<void> {
    return this.#handle.close();
  }
}
