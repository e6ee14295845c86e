/**
 * Erasing a target before it goes back to the pool, or before a deploy.
 *
 * Metadata erase zeroes the first and the last MiB. The first MiB holds the
 * MBR (LBA 0) and the primary GPT header and entry array (LBA 1-33 with 512-
 * byte sectors, LBA 1-5 with 4 KiB sectors), plus the boot loader gap that
 * GRUB uses before the first 1 MiB-aligned partition. The last MiB holds the
 * backup GPT entries and header (the last 33 LBAs), and the RAID metadata
 * (md 0.90/1.0, many hardware RAID formats) that lives at a disk's end.
 * What it does not reach: filesystem and LVM signatures at the start of each
 * partition, which a new partition table at the same place would expose
 * again (Ironic runs wipefs on every partition first); doing that needs the
 * partition table parsed before it is erased, and is not done here.
 *
 * Full erase writes zeros over the whole target in bounded chunks and
 * reports progress; afterwards the target is known to read as zeros, so a
 * deploy that follows may skip its zero runs. On a regular file the same
 * result comes from truncating it to 0 and back to its size (which frees the
 * blocks, as punching one big hole would); `method: 'write-zeros'` forces
 * the device path for files too.
 */
import { AgentError } from '../errors.ts';
import { writeFully, ZERO_CHUNK_BYTES, type Target } from './target.ts';

export const MIB = 1024 * 1024;

export interface ErasedRange {
  readonly offset: number;
  readonly length: number;
}

/** The ranges a metadata erase zeroes: [0, 1 MiB) and the last MiB, merged when the target is small. */
export function metadataRanges(size: number): ErasedRange[] {
  if (size <= 2 * MIB) return size > 0 ? [{ offset: 0, length: size }] : [];
  return [
    { offset: 0, length: MIB },
    { offset: size - MIB, length: MIB },
  ];
}

export async function eraseMetadata(target: Target): Promise<ErasedRange[]> {
  const ranges = metadataRanges(target.size);
  const zeros = new Uint8Array(MIB);
  for (const range of ranges) {
    for (let done = 0; done < range.length; done += MIB) {
      await writeFully(target.handle, zeros.subarray(0, Math.min(MIB, range.length - done)), range.offset + done);
    }
  }
  await target.handle.datasync();
  return ranges;
}

export interface FullEraseOptions {
  /** Called after each chunk with the bytes zeroed so far and the total. */
  readonly onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** Bytes per write; default 4 MiB. */
  readonly chunkBytes?: number;
  /** fdatasync after this many bytes so dirty pages stay bounded; default 1 GiB. */
  readonly syncIntervalBytes?: number;
  readonly signal?: AbortSignal;
  /** 'auto': truncate regular files, write zeros to devices. */
  readonly method?: 'auto' | 'write-zeros';
}

export async function eraseFull(target: Target, options: FullEraseOptions = {}): Promise<void> {
  const total = target.size;
  if (target.kind === 'file' && (options.method ?? 'auto') === 'auto') {
    await target.handle.truncate(0);
    await target.handle.truncate(total);
    await target.handle.datasync();
    options.onProgress?.(total, total);
    return;
  }
  const chunkBytes = options.chunkBytes ?? 4 * ZERO_CHUNK_BYTES;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0)
    throw new AgentError('invalid-argument', `chunkBytes must be positive, got ${chunkBytes}`);
  const syncInterval = options.syncIntervalBytes ?? 1024 * MIB;
  const zeros = new Uint8Array(chunkBytes);
  let sinceSync = 0;
  for (let done = 0; done < total; ) {
    options.signal?.throwIfAborted();
    const size = Math.min(chunkBytes, total - done);
    await writeFully(target.handle, zeros.subarray(0, size), done);
    done += size;
    sinceSync += size;
    if (sinceSync >= syncInterval) {
      await target.handle.datasync();
      sinceSync = 0;
    }
    options.onProgress?.(done, total);
  }
  await target.handle.datasync();
}
