/**
 * Serves the iPXE binaries (by their configured names) straight from
 * Debian's `ipxe` package directory and everything else from the TFTP root,
 * so nothing has to be copied into the root at install time.
 *
 * Debian ships `/usr/lib/ipxe/ipxe.efi` as a link to `/boot/ipxe.efi`. That
 * directory is the operator's (a package's) and trusted: its links are
 * resolved once, at start, to the files they name. Links inside `tftp_root`
 * get no such trust: the root source refuses any that lead out of it.
 */
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { checkRelativeName } from '../paths.ts';
import { openRegularFile, type TftpFile, type TftpFileSource } from './file-source.ts';

export class IpxeOverlayFileSource implements TftpFileSource {
  private readonly root: TftpFileSource;
  /** Served name -> the real path resolved at start. */
  private readonly binaries: ReadonlyMap<string, string>;

  private constructor(root: TftpFileSource, binaries: ReadonlyMap<string, string>) {
    this.root = root;
    this.binaries = binaries;
  }

  /**
   * Resolves each iPXE name inside `ipxeDir` now. A name missing there is
   * looked up in the root instead (an operator may place the binaries there).
   */
  static async create(root: TftpFileSource, ipxeDir: string, ipxeNames: readonly string[]): Promise<IpxeOverlayFileSource> {
    const binaries = new Map<string, string>();
    for (const configured of ipxeNames) {
      const name = path.posix.basename(configured);
      checkRelativeName(name, ipxeDir);
      const real = await realpath(path.join(ipxeDir, name)).catch(() => null);
      if (real === null) continue;
      const info = await stat(real).catch(() => null);
      if (info?.isFile()) binaries.set(name, real);
    }
    return new IpxeOverlayFileSource(root, binaries);
  }

  /** The names served from the iPXE directory and the files they resolved to. */
  resolved(): ReadonlyMap<string, string> {
    return this.binaries;
  }

  open(name: string): Promise<TftpFile> {
    const real = this.binaries.get(name);
    return real === undefined ? this.root.open(name) : openRegularFile(real);
  }
}
