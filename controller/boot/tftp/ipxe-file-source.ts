/**
 * Serves the iPXE binaries (by their configured names) straight from
 * Debian's `ipxe` package directory and everything else from the TFTP root,
 * so nothing has to be copied into the root at install time.
 */
import path from 'node:path';
import { DirectoryFileSource, type TftpFile, type TftpFileSource } from './file-source.ts';

export class IpxeOverlayFileSource implements TftpFileSource {
  private readonly root: TftpFileSource;
  private readonly ipxe: TftpFileSource;
  private readonly names: ReadonlySet<string>;

  constructor(root: TftpFileSource, ipxeDir: string, ipxeNames: readonly string[]) {
    this.root = root;
    this.ipxe = new DirectoryFileSource(ipxeDir);
    this.names = new Set(ipxeNames.map((n) => path.posix.basename(n)));
  }

  open(name: string): Promise<TftpFile> {
    return this.names.has(name) ? this.ipxe.open(name) : this.root.open(name);
  }
}
