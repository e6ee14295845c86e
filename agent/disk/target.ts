/**
 * A write target: a block device (the machine's disk) or a regular file
 * (tests, and benchmarks on a developer machine). Node has no lseek and no
 * BLKGETSIZE64 ioctl, and fstat reports size 0 for block devices, so a
 * device's size comes from /sys/dev/block/<major>:<minor>/size, which the
 * kernel keeps in 512-byte units whatever the logical block size is.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { TargetIoError } from '../errors.ts';
import { readInteger, under } from '../inventory/index.ts';

export type TargetKind = 'block-device' | 'file';

export interface Target {
  readonly path: string;
  readonly kind: TargetKind;
  /** Bytes the target holds: the device size, or the file's current length. */
  readonly size: number;
  readonly handle: FileHandle;
}

export interface OpenTargetOptions {
  /** Open for writing ('r+': never creates or truncates). Default false. */
  readonly write?: boolean;
  /** Root holding /sys, for block device sizes. Default '/'. */
  readonly sysRoot?: string;
}

/** Linux dev_t to (major, minor), as new_decode_dev() in the kernel does. */
export function decodeDevice(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}

export async function openTarget(path: string, options: OpenTargetOptions = {}): Promise<Target> {
  let handle: FileHandle;
  try {
    handle = await open(path, options.write ? 'r+' : 'r');
  } catch (error) {
    throw new TargetIoError(`cannot open ${path}: ${(error as Error).message}`, { path }, error);
  }
  try {
    const stats = await handle.stat({ bigint: true });
    if (stats.isFile()) return { path, kind: 'file', size: Number(stats.size), handle };
    if (!stats.isBlockDevice()) throw new TargetIoError(`${path} is neither a block device nor a regular file`, { path });
    const { major, minor } = decodeDevice(stats.rdev);
    const sectors = await readInteger(under(options.sysRoot ?? '/', `sys/dev/block/${major}:${minor}/size`));
    if (sectors === undefined)
      throw new TargetIoError(`cannot find the size of block device ${path} (${major}:${minor})`, { path, major, minor });
    return { path, kind: 'block-device', size: sectors * 512, handle };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** Writes all of `data` at `position` (a write may be short; it is repeated until done). */
export async function writeFully(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    if (bytesWritten <= 0) throw new TargetIoError(`write made no progress at offset ${position + done}`, { offset: position + done });
    done += bytesWritten;
  }
}

/** Fills `buffer` from `position`; returns how many bytes were read (less only at end of target). */
export async function readFully(handle: FileHandle, buffer: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/**
 * One shared buffer of zeros for every zero write. It is only ever passed to
 * write(), never written into, so sharing it is safe, and zeroing a run of
 * any length allocates nothing.
 */
export const ZERO_CHUNK_BYTES = 1024 * 1024;
const zeros = new Uint8Array(ZERO_CHUNK_BYTES);

/** Writes `length` zero bytes from `position`, in pieces of at most `chunkBytes` (≤ 1 MiB). */
export async function writeZeros(handle: FileHandle, position: number, length: number, chunkBytes = ZERO_CHUNK_BYTES): Promise<void> {
  const piece = Math.min(chunkBytes, ZERO_CHUNK_BYTES);
  for (let done = 0; done < length; ) {
    const size = Math.min(piece, length - done);
    await writeFully(handle, zeros.subarray(0, size), position + done);
    done += size;
  }
}
