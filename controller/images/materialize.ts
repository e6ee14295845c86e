/**
 * Writes an ImageSource to a file: positioned writes of data extents, zero
 * extents skipped when the target is known to read as zeros (a fresh sparse
 * file). The reference the deploy path is compared with, and the quickest way
 * to turn a qcow2 into a raw file for tests and benchmarks.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { BmError } from '../errors.ts';
import { SHARED_ZEROS, extentEnd, type ImageSource } from './extents.ts';

export interface MaterializeResult {
  readonly size: number;
  readonly dataBytes: number;
  readonly zeroBytes: number;
}

export interface MaterializeOptions {
  /** True when every byte of the target already reads as zero, so holes need no writes. */
  readonly targetReadsAsZero: boolean;
  /** Resume point: extents before it are not read or written. */
  readonly fromOffset?: number;
}

const WRITES_IN_FLIGHT = 4;

async function writeFully(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const { bytesWritten } = await handle.write(data, written, data.length - written, position + written);
    written += bytesWritten;
  }
}

export async function materializeToHandle(
  source: ImageSource,
  handle: FileHandle,
  options: MaterializeOptions,
): Promise<MaterializeResult> {
  let position = options.fromOffset ?? 0;
  let dataBytes = 0;
  let zeroBytes = 0;
  // A few positioned writes in flight keep the disk queue full (as qemu-img's
  // parallel requests do); the bound keeps memory at a few chunks.
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  const submit = async (data: Uint8Array, at: number): Promise<void> => {
    while (inFlight.size >= WRITES_IN_FLIGHT) await Promise.race(inFlight);
    if (failure !== undefined) throw failure;
    const write = writeFully(handle, data, at).then(
      () => {
        inFlight.delete(write);
      },
      (err: unknown) => {
        inFlight.delete(write);
        failure ??= err;
      },
    );
    inFlight.add(write);
  };
  try {
    for await (const extent of source.extents(options.fromOffset)) {
      if (extent.offset !== position) {
        throw new BmError('internal', `image source yielded an extent at ${extent.offset}, expected ${position}`, {
          format: source.format,
        });
      }
      if (extent.kind === 'data') {
        await submit(extent.data, extent.offset);
        dataBytes += extent.data.length;
      } else {
        zeroBytes += extent.length;
        if (!options.targetReadsAsZero) {
          for (let done = 0; done < extent.length; done += SHARED_ZEROS.length) {
            await submit(SHARED_ZEROS.subarray(0, Math.min(SHARED_ZEROS.length, extent.length - done)), extent.offset + done);
          }
        }
      }
      position = extentEnd(extent);
    }
  } finally {
    await Promise.all(inFlight);
  }
  if (failure !== undefined) throw failure;
  return { size: source.virtualSize, dataBytes, zeroBytes };
}

/** Creates (or truncates) `path` as a sparse file of the image's size and writes the image into it. */
export async function materializeToFile(source: ImageSource, path: string): Promise<MaterializeResult> {
  const handle = await open(path, 'w');
  try {
    // Truncating to the full size first makes the file sparse: holes are never written.
    await handle.truncate(source.virtualSize);
    return await materializeToHandle(source, handle, { targetReadsAsZero: true });
  } finally {
    await handle.close();
  }
}
