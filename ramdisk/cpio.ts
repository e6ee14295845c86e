/**
 * The initramfs archive: SVR4 "newc" cpio (the format the kernel unpacks,
 * Documentation/driver-api/early-userspace/buffer-format.rst), written so the
 * same entries always give the same bytes: entries sorted by path, owner
 * root, one fixed mtime, inode numbers in that order. Pure: entries in,
 * bytes out; device nodes need no privileges because nothing is mknod'ed.
 */

export type CpioEntry =
  | { readonly kind: 'dir'; readonly path: string; readonly mode: number }
  | { readonly kind: 'file'; readonly path: string; readonly mode: number; readonly data: Uint8Array }
  | { readonly kind: 'symlink'; readonly path: string; readonly target: string }
  | { readonly kind: 'chardev'; readonly path: string; readonly mode: number; readonly major: number; readonly minor: number };

export class CpioError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`cpio entry "${path}": ${message}`);
    this.name = 'CpioError';
    this.path = path;
  }
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const HEADER_BYTES = 110;
const encoder = new TextEncoder();

function hex8(value: number): string {
  return value.toString(16).padStart(8, '0');
}

function pad4(length: number): number {
  return (4 - (length % 4)) % 4;
}

interface Header {
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly mtime: number;
  readonly size: number;
  readonly rdevMajor: number;
  readonly rdevMinor: number;
  readonly name: string;
}

function header(h: Header): Uint8Array {
  const name = encoder.encode(`${h.name}\0`);
  const fields = [h.ino, h.mode, 0, 0, h.nlink, h.mtime, h.size, 0, 0, h.rdevMajor, h.rdevMinor, name.length, 0];
  const text = encoder.encode(`070701${fields.map(hex8).join('')}`);
  const out = new Uint8Array(HEADER_BYTES + name.length + pad4(HEADER_BYTES + name.length));
  out.set(text, 0);
  out.set(name, HEADER_BYTES);
  return out;
}

function checkPath(path: string): void {
  if (path === '' || path.startsWith('/') || path.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new CpioError(path, 'must be a relative path without empty, "." or ".." parts');
  }
}

/**
 * The archive's pieces in order (headers, data, padding, trailer), to be
 * written or compressed as a stream; concatenated they are the archive.
 * Byte order of paths decides the order, so a directory precedes its contents.
 */
export function* cpioChunks(entries: readonly CpioEntry[], mtime: number): Generator<Uint8Array> {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i]!.path === sorted[i - 1]!.path) throw new CpioError(sorted[i]!.path, 'appears twice');
  let ino = 1;
  for (const entry of sorted) {
    checkPath(entry.path);
    const common = { ino: ino++, mtime, name: entry.path, rdevMajor: 0, rdevMinor: 0 };
    let data: Uint8Array = new Uint8Array(0);
    let h: Header;
    switch (entry.kind) {
      case 'dir':
        h = { ...common, mode: S_IFDIR | (entry.mode & 0o7777), nlink: 2, size: 0 };
        break;
      case 'file':
        data = entry.data;
        h = { ...common, mode: S_IFREG | (entry.mode & 0o7777), nlink: 1, size: data.length };
        break;
      case 'symlink':
        data = encoder.encode(entry.target);
        h = { ...common, mode: S_IFLNK | 0o777, nlink: 1, size: data.length };
        break;
      case 'chardev':
        h = { ...common, mode: S_IFCHR | (entry.mode & 0o7777), nlink: 1, size: 0, rdevMajor: entry.major, rdevMinor: entry.minor };
        break;
    }
    if (h.size > 0xffffffff) throw new CpioError(entry.path, 'is larger than newc can hold (4 GiB)');
    yield header(h);
    if (data.length > 0) {
      yield data;
      const padding = pad4(data.length);
      if (padding > 0) yield new Uint8Array(padding);
    }
  }
  yield header({ ino: 0, mode: 0, nlink: 1, mtime: 0, size: 0, rdevMajor: 0, rdevMinor: 0, name: 'TRAILER!!!' });
}

/** The whole archive in memory (tests and small archives). */
export function cpioArchive(entries: readonly CpioEntry[], mtime: number): Uint8Array {
  const chunks = [...cpioChunks(entries, mtime)];
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
