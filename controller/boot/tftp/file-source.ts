/**
 * Where the TFTP server reads files from. The default reads a directory
 * confined to its root; the image store can implement the same interface
 * later without the protocol code knowing.
 */
import { open } from 'node:fs/promises';
import { resolveInsideRoot } from '../paths.ts';

export interface TftpFile {
  readonly size: number;
  /** Reads up to `length` bytes at `position` into `into`; returns the count read. */
  read(into: Uint8Array, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface TftpFileSource {
  /** Throws PathOutsideRootError (refused) or NotFoundError (missing). */
  open(name: string): Promise<TftpFile>;
}

export class DirectoryFileSource implements TftpFileSource {
  readonly root: string;
  constructor(root: string) {
    this.root = root;
  }

  async open(name: string): Promise<TftpFile> {
    return openRegularFile(await resolveInsideRoot(this.root, name));
  }
}

/** Opens a file already known to be allowed (confined, or resolved from a trusted directory). */
export async function openRegularFile(real: string): Promise<TftpFile> {
  const handle = await open(real, 'r');
  const info = await handle.stat();
  return {
    size: info.size,
    read: async (into, length, position) => (await handle.read(into, 0, length, position)).bytesRead,
    close: () => handle.close(),
  };
}
