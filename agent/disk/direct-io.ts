/**
 * Direct I/O (O_DIRECT) for the image's data: writes that bypass the page
 * cache. A deploy writes each byte once and reads it back once, so caching
 * it only costs: the kernel copies every byte into page-cache pages it must
 * first find and fault in, and in a deploy ramdisk those pages are the
 * machine's RAM. Measured here (a VM that hands freed memory back to its
 * host), 2 GiB written with dd: buffered 4.6–4.9 s of system time, direct
 * 0.19 s; read back, 4.05 s against 0.05 s (docs/performance-notes.md).
 *
 * O_DIRECT needs the buffer's address, the length and the file offset
 * aligned to the device's logical block size. DIRECT_ALIGN (4 KiB) covers
 * 512-byte and 4Kn disks. JavaScript cannot ask where a buffer lives, so
 * aligned memory comes from a WebAssembly.Memory, which V8 maps from fresh
 * pages (page-aligned): views at multiples of DIRECT_ALIGN into it are
 * aligned. Anything else, and any target that refuses O_DIRECT (tmpfs before Linux 6.6), is
 * written through the page cache as before: direct I/O is a fast path,
 * never a requirement.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

export const DIRECT_ALIGN = 4096;
const WASM_PAGE = 64 * 1024;

/** The engine's WebAssembly.Memory (the project's TypeScript libraries declare its types, not the global). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
const WasmMemoryClass = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => WasmMemory } })
  .WebAssembly.Memory;

/** ArrayBuffers whose memory is page-aligned (those of AlignedSlots). */
const alignedBuffers = new WeakSet<ArrayBufferLike>();

/** True when `data` may be written with O_DIRECT at `offset`: aligned memory, length and offset. */
export function isDirectAligned(data: Uint8Array, offset: number): boolean {
  return (
    alignedBuffers.has(data.buffer) &&
    data.byteOffset % DIRECT_ALIGN === 0 &&
    data.length % DIRECT_ALIGN === 0 &&
    offset % DIRECT_ALIGN === 0
  );
}

/**
 * A fixed set of equal slots of page-aligned memory, each starting at a
 * multiple of DIRECT_ALIGN. The memory is reserved once and never freed;
 * a slot's pages count in RSS only once something was written into them,
 * and slots are handed out last-freed first, so the same few are reused.
 */
export class AlignedSlots {
  readonly slotBytes: number;
  readonly count: number;
  #memory: ArrayBuffer | undefined;
  readonly #free: number[] = [];
  readonly #lent = new Set<number>();

  constructor(slotBytes: number, count: number) {
    this.slotBytes = Math.ceil(slotBytes / DIRECT_ALIGN) * DIRECT_ALIGN;
    this.count = count;
    for (let i = count - 1; i >= 0; i--) this.#free.push(i);
  }

  /** A whole free slot (slotBytes long, aligned), or undefined when all are lent. */
  take(): Uint8Array | undefined {
    const index = this.#free.pop();
    if (index === undefined) return undefined;
    this.#lent.add(index);
    return new Uint8Array(this.#buffer(), index * this.slotBytes, this.slotBytes);
  }

  /** True when `bytes` is a view into a slot of this set that is lent out. */
  owns(bytes: Uint8Array): boolean {
    return this.#memory !== undefined && bytes.buffer === this.#memory && this.#lent.has(Math.floor(bytes.byteOffset / this.slotBytes));
  }

  /** Gives back the slot `bytes` lies in; anything else (not ours, already back) is ignored. */
  give(bytes: Uint8Array): void {
    if (!this.owns(bytes)) return;
    const index = Math.floor(bytes.byteOffset / this.slotBytes);
    this.#lent.delete(index);
    this.#free.push(index);
  }

  get lent(): number {
    return this.#lent.size;
  }

  #buffer(): ArrayBuffer {
    if (this.#memory === undefined) {
      const pages = Math.ceil((this.slotBytes * this.count) / WASM_PAGE);
      const memory = new WasmMemoryClass({ initial: pages, maximum: pages }).buffer;
      alignedBuffers.add(memory);
      this.#memory = memory;
    }
    return this.#memory;
  }
}

/**
 * Opens `path` a second time with O_DIRECT for writing, or null when the
 * file system refuses it (EINVAL, e.g. tmpfs before Linux 6.6) or the target cannot be
 * opened so: the caller then writes through the page cache.
 */
export async function openDirect(path: string): Promise<FileHandle | null> {
  try {
    return await open(path, constants.O_RDWR | constants.O_DIRECT);
  } catch {
    return null;
  }
}

/** An O_DIRECT write the kernel refused for its alignment (EINVAL): worth retrying through the page cache. */
export function isDirectRefusal(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'EINVAL';
}
