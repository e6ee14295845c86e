/**
 * Where the HTTP boot server streams kernels and ramdisks from. The default
 * reads a directory confined to its root; the image store can implement the
 * same interface. Streams are ranged and never buffer a whole file.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { resolveInsideRoot } from '../paths.ts';

export interface ServedBlob {
  readonly size: number;
  readonly modified: Date | null;
  /** Bytes start..end inclusive. */
  stream(start: number, end: number): Readable;
}

export interface BlobSource {
  /** Throws PathOutsideRootError (refused) or NotFoundError. */
  open(name: string): Promise<ServedBlob>;
}

export class DirectoryBlobSource implements BlobSource {
  readonly root: string;
  constructor(root: string) {
    this.root = root;
  }

  async open(name: string): Promise<ServedBlob> {
    const real = await resolveInsideRoot(this.root, name);
    const info = await stat(real);
    return {
      size: info.size,
      modified: info.mtime,
      stream: (start, end) => createReadStream(real, { start, end, highWaterMark: 256 * 1024 }),
    };
  }
}
