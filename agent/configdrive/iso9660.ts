/**
 * A small ISO 9660 (ECMA-119) image writer: files in, one Uint8Array out.
 * Pure: no I/O, and the same input (with the same `recordedAt`) gives the
 * same bytes.
 *
 * ECMA-119 names are upper-case d-characters (A-Z 0-9 _), so the primary
 * tree alone cannot hold `meta_data.json`. Like `genisoimage -J -r`, which
 * OpenStack config drives are made with, the image carries two views of the
 * same files:
 * - Rock Ridge (RRIP 1.10 over SUSP 1.10) in the primary tree: an SP entry in
 *   the root's "." record announces SUSP, an ER entry (in a continuation
 *   area, it is too long for the record) names RRIP_1991A, and every record
 *   has a PX entry (mode, links) and, for real names, an NM entry with the
 *   name as given. Linux mounts prefer this view.
 * - Joliet: a supplementary volume descriptor (escape sequence %/E, UCS-2
 *   level 3) with its own path tables and directories whose names are
 *   UCS-2 big-endian; file extents are shared with the primary tree.
 * Primary names are mapped to ISO level 2 (up to 30 characters plus ";1").
 *
 * Layout (2048-byte logical sectors): 0-15 system area (zeros), 16 primary
 * volume descriptor, 17 Joliet descriptor, 18 terminator, then the path
 * tables (L and M for each tree), the Rock Ridge continuation area, the
 * primary directories, the Joliet directories, and the file data, each file
 * starting on a sector boundary.
 */
import { AgentError } from '../errors.ts';

export const SECTOR = 2048;

export interface IsoFile {
  /** Slash-separated path inside the image, e.g. `openstack/latest/meta_data.json`. */
  readonly path: string;
  readonly data: Uint8Array;
}

export interface IsoOptions {
  /** Volume label, e.g. `config-2` (written as given, as genisoimage -V does). */
  readonly volumeId: string;
  readonly files: readonly IsoFile[];
  /** Timestamps of the volume and every record; default the Unix epoch (reproducible output). */
  readonly recordedAt?: Date;
  readonly publisherId?: string;
  readonly applicationId?: string;
}

interface FileNode {
  readonly name: string;
  readonly data: Uint8Array;
  extent: number;
}

interface DirNode {
  readonly name: string;
  readonly parent: DirNode | undefined;
  readonly dirs: Map<string, DirNode>;
  readonly files: Map<string, FileNode>;
}

/** Per tree (primary or Joliet): names and directory placement. */
interface TreeLayout {
  readonly dirs: readonly DirNode[];
  readonly number: Map<DirNode, number>;
  readonly extent: Map<DirNode, number>;
  readonly size: Map<DirNode, number>;
  pathTableSize: number;
  pathTableL: number;
  pathTableM: number;
}

type Entry =
  | { readonly kind: 'self' | 'parent'; readonly dir: DirNode }
  | { readonly kind: 'dir'; readonly dir: DirNode }
  | { readonly kind: 'file'; readonly file: FileNode };

interface Flavour {
  readonly joliet: boolean;
  dirIdentifier(dir: DirNode): Uint8Array;
  fileIdentifier(file: FileNode): Uint8Array;
  systemUse(entry: Entry, isRootSelf: boolean): Uint8Array;
}

const encoder = new TextEncoder();
const MAX_RECORD = 255;

function invalid(message: string, context: Record<string, string | number> = {}): AgentError {
  return new AgentError('invalid-argument', `ISO 9660: ${message}`, context);
}

// ---- field encoders (ECMA-119 7.2 and 7.3: both-byte-order numbers) ----

function both16(bytes: Uint8Array, at: number, value: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint16(at, value, true);
  view.setUint16(at + 2, value, false);
}

function both32(bytes: Uint8Array, at: number, value: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(at, value, true);
  view.setUint32(at + 4, value, false);
}

export function bothEndian32(value: number): Uint8Array {
  const bytes = new Uint8Array(8);
  both32(bytes, 0, value);
  return bytes;
}

/** A string field padded with spaces (ASCII) or UCS-2 spaces (Joliet). */
function putText(bytes: Uint8Array, at: number, length: number, text: string, ucs2: boolean): void {
  const encoded = ucs2 ? ucs2be(text) : encoder.encode(text);
  if (encoded.length > length) throw invalid(`"${text}" is longer than its ${length}-byte field`);
  bytes.set(encoded, at);
  for (let i = at + encoded.length; i < at + length; i++) bytes[i] = ucs2 && (i - at) % 2 === 0 ? 0x00 : 0x20;
}

export function ucs2be(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    bytes[i * 2] = unit >> 8;
    bytes[i * 2 + 1] = unit & 0xff;
  }
  return bytes;
}

/** 7-byte recording date of a directory record (9.1.5), UTC. */
export function recordDate(date: Date): Uint8Array {
  return Uint8Array.of(
    date.getUTCFullYear() - 1900,
    date.getUTCMonth() + 1,
    date.getUTCDate(),
    date.getUTCHours(),
    date.getUTCMinutes(),
    date.getUTCSeconds(),
    0,
  );
}

/** 17-byte volume date (8.4.26.1): digits YYYYMMDDHHMMSScc and a zone offset, UTC. */
export function volumeDate(date: Date | undefined): Uint8Array {
  const bytes = new Uint8Array(17);
  const pad = (value: number, width: number): string => String(value).padStart(width, '0');
  const digits = date
    ? `${pad(date.getUTCFullYear(), 4)}${pad(date.getUTCMonth() + 1, 2)}${pad(date.getUTCDate(), 2)}${pad(date.getUTCHours(), 2)}${pad(date.getUTCMinutes(), 2)}${pad(date.getUTCSeconds(), 2)}00`
    : '0000000000000000';
  bytes.set(encoder.encode(digits), 0);
  return bytes;
}

// ---- names ----

/** ISO level 2 file identifier: d-characters, one dot, at most 30 characters, then ";1". */
export function primaryFileName(name: string): string {
  const upper = name.toUpperCase();
  const dot = upper.lastIndexOf('.');
  const clean = (part: string): string => part.replace(/[^A-Z0-9_]/g, '_');
  let base = clean(dot > 0 ? upper.slice(0, dot) : upper);
  let extension = clean(dot > 0 ? upper.slice(dot + 1) : '');
  if (extension.length > 8) extension = extension.slice(0, 8);
  base = base.slice(0, 30 - 1 - extension.length);
  return `${base}.${extension};1`;
}

/** ISO level 2 directory identifier: d-characters, at most 31. */
export function primaryDirName(name: string): string {
  return name
    .toUpperCase()
    .replace(/[^A-Z0-9_]/g, '_')
    .slice(0, 31);
}

/**
 * ISO names for the children of one directory. Mapping to d-characters and
 * cutting to 30 characters can make two names equal (`a-b` and `a_b`), so a
 * clash gets a number in place of the end of its base name, as genisoimage
 * does; the Rock Ridge and Joliet names stay as given.
 */
function assignPrimaryNames(dir: DirNode, names: Map<DirNode | FileNode, string>): void {
  const taken = new Set<string>();
  const unique = (node: DirNode | FileNode, name: string, isFile: boolean): void => {
    let candidate = name;
    for (let counter = 1; taken.has(candidate); counter++) {
      const digits = String(counter);
      if (isFile) {
        const [stem = '', rest = ''] = name.split('.');
        candidate = `${stem.slice(0, Math.max(1, 30 - 1 - rest.replace(';1', '').length - digits.length))}${digits}.${rest}`;
      } else {
        candidate = `${name.slice(0, 31 - digits.length)}${digits}`;
      }
    }
    taken.add(candidate);
    names.set(node, candidate);
  };
  for (const child of [...dir.dirs.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) unique(child, primaryDirName(child.name), false);
  for (const file of [...dir.files.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) unique(file, primaryFileName(file.name), true);
  for (const child of dir.dirs.values()) assignPrimaryNames(child, names);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const difference = (a[i] ?? 0) - (b[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return a.length - b.length;
}

// ---- Rock Ridge system use entries (SUSP 1.10 section 5, RRIP 1.10 section 4) ----

const RRIP_ID = 'RRIP_1991A';
const RRIP_DESCRIPTOR = 'THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS';
const RRIP_SOURCE =
  'PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.';

function suspEntry(signature: string, body: Uint8Array): Uint8Array {
  const entry = new Uint8Array(4 + body.length);
  entry.set(encoder.encode(signature), 0);
  entry[2] = entry.length;
  entry[3] = 1;
  entry.set(body, 4);
  return entry;
}

function spEntry(): Uint8Array {
  return suspEntry('SP', Uint8Array.of(0xbe, 0xef, 0));
}

function pxEntry(mode: number, links: number): Uint8Array {
  const body = new Uint8Array(32);
  both32(body, 0, mode);
  both32(body, 8, links);
  // uid and gid 0: the drive is read by root on the instance.
  return suspEntry('PX', body);
}

function nmEntry(name: string): Uint8Array {
  return suspEntry('NM', Uint8Array.of(0, ...encoder.encode(name)));
}

function ceEntry(block: number, offset: number, length: number): Uint8Array {
  const body = new Uint8Array(24);
  both32(body, 0, block);
  both32(body, 8, offset);
  both32(body, 16, length);
  return suspEntry('CE', body);
}

export function erEntry(): Uint8Array {
  const [id, descriptor, source] = [RRIP_ID, RRIP_DESCRIPTOR, RRIP_SOURCE].map((text) => encoder.encode(text)) as [
    Uint8Array,
    Uint8Array,
    Uint8Array,
  ];
  return suspEntry('ER', Uint8Array.of(id.length, descriptor.length, source.length, 1, ...id, ...descriptor, ...source));
}

const MODE_DIR = 0o040555;
const MODE_FILE = 0o100444;

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

// ---- the tree ----

function buildTree(files: readonly IsoFile[]): DirNode {
  const root: DirNode = { name: '', parent: undefined, dirs: new Map(), files: new Map() };
  for (const file of files) {
    const parts = file.path.split('/');
    if (parts.some((part) => part === '' || part === '.' || part === '..')) throw invalid(`bad path "${file.path}"`, { path: file.path });
    if (parts.length > 8) throw invalid(`"${file.path}" is deeper than 8 levels`, { path: file.path });
    let dir = root;
    for (const part of parts.slice(0, -1)) {
      if (dir.files.has(part)) throw invalid(`"${part}" is both a file and a directory`, { path: file.path });
      let next = dir.dirs.get(part);
      if (!next) {
        next = { name: part, parent: dir, dirs: new Map(), files: new Map() };
        dir.dirs.set(part, next);
      }
      dir = next;
    }
    const name = parts[parts.length - 1] ?? '';
    if (dir.dirs.has(name)) throw invalid(`"${name}" is both a file and a directory`, { path: file.path });
    if (dir.files.has(name)) throw invalid(`"${file.path}" given twice`, { path: file.path });
    if (name.length > 64) throw invalid(`"${name}" is longer than 64 characters (Joliet)`, { path: file.path });
    dir.files.set(name, { name, data: file.data, extent: 0 });
  }
  return root;
}

function entriesOf(dir: DirNode, flavour: Flavour): Entry[] {
  const children: { id: Uint8Array; entry: Entry }[] = [
    ...[...dir.dirs.values()].map((child) => ({ id: flavour.dirIdentifier(child), entry: { kind: 'dir', dir: child } as const })),
    ...[...dir.files.values()].map((file) => ({ id: flavour.fileIdentifier(file), entry: { kind: 'file', file } as const })),
  ].sort((a, b) => compareBytes(a.id, b.id));
  for (let i = 1; i < children.length; i++) {
    const previous = children[i - 1];
    const current = children[i];
    if (previous && current && compareBytes(previous.id, current.id) === 0) {
      throw invalid(`two names in "${dir.name || '/'}" map to the same ${flavour.joliet ? 'Joliet' : 'ISO 9660'} name`);
    }
  }
  return [{ kind: 'self', dir }, { kind: 'parent', dir }, ...children.map((child) => child.entry)];
}

function identifierOf(entry: Entry, flavour: Flavour): Uint8Array {
  switch (entry.kind) {
    case 'self':
      return Uint8Array.of(0);
    case 'parent':
      return Uint8Array.of(1);
    case 'dir':
      return flavour.dirIdentifier(entry.dir);
    case 'file':
      return flavour.fileIdentifier(entry.file);
  }
}

function recordLength(identifierLength: number, systemUseLength: number): number {
  const length = 33 + identifierLength + (identifierLength % 2 === 0 ? 1 : 0) + systemUseLength;
  return length + (length % 2);
}

/** Bytes a directory's records take, none crossing a sector boundary (6.8.1.1). */
function directorySize(dir: DirNode, flavour: Flavour, root: DirNode): number {
  let sectors = 1;
  let used = 0;
  for (const entry of entriesOf(dir, flavour)) {
    const length = recordLength(
      identifierOf(entry, flavour).length,
      flavour.systemUse(entry, entry.kind === 'self' && dir === root).length,
    );
    if (length > MAX_RECORD) throw invalid(`a directory record of ${length} bytes does not fit 255`);
    if (used + length > SECTOR) {
      sectors++;
      used = 0;
    }
    used += length;
  }
  return sectors * SECTOR;
}

/** Directories in path table order (9.4): by level, then parent number, then identifier. */
function pathTableOrder(root: DirNode, flavour: Flavour): DirNode[] {
  const ordered: DirNode[] = [root];
  for (let i = 0; i < ordered.length; i++) {
    const dir = ordered[i];
    if (!dir) break;
    const children = [...dir.dirs.values()].sort((a, b) => compareBytes(flavour.dirIdentifier(a), flavour.dirIdentifier(b)));
    ordered.push(...children);
  }
  return ordered;
}

function pathTableSize(dirs: readonly DirNode[], flavour: Flavour, root: DirNode): number {
  return dirs.reduce((sum, dir) => {
    const length = dir === root ? 1 : flavour.dirIdentifier(dir).length;
    return sum + 8 + length + (length % 2);
  }, 0);
}

const sectorsFor = (bytes: number): number => Math.max(1, Math.ceil(bytes / SECTOR));

export function buildIso9660(options: IsoOptions): Uint8Array {
  const date = options.recordedAt ?? new Date(0);
  const root = buildTree(options.files);
  const primaryNames = new Map<DirNode | FileNode, string>();
  assignPrimaryNames(root, primaryNames);
  let continuationSector = 0;
  const er = erEntry();

  const primary: Flavour = {
    joliet: false,
    dirIdentifier: (dir) => encoder.encode(primaryNames.get(dir) ?? ''),
    fileIdentifier: (file) => encoder.encode(primaryNames.get(file) ?? ''),
    systemUse: (entry, isRootSelf) => {
      const parts: Uint8Array[] = [];
      if (isRootSelf) parts.push(spEntry());
      const linksOf = (dir: DirNode): number => 2 + dir.dirs.size;
      if (entry.kind === 'file') parts.push(pxEntry(MODE_FILE, 1), nmEntry(entry.file.name));
      else if (entry.kind === 'dir') parts.push(pxEntry(MODE_DIR, linksOf(entry.dir)), nmEntry(entry.dir.name));
      else parts.push(pxEntry(MODE_DIR, linksOf(entry.kind === 'parent' ? (entry.dir.parent ?? entry.dir) : entry.dir)));
      if (isRootSelf) parts.push(ceEntry(continuationSector, 0, er.length));
      return concat(parts);
    },
  };
  const joliet: Flavour = {
    joliet: true,
    dirIdentifier: (dir) => ucs2be(dir.name),
    // No ";1" version suffix: genisoimage leaves it off Joliet names and
    // isoinfo -J then finds files by their plain names.
    fileIdentifier: (file) => ucs2be(file.name),
    systemUse: () => new Uint8Array(0),
  };

  // ---- allocate sectors ----
  let next = 19; // 16 PVD, 17 Joliet SVD, 18 terminator
  const layouts = new Map<Flavour, TreeLayout>();
  for (const flavour of [primary, joliet]) {
    const dirs = pathTableOrder(root, flavour);
    const size = pathTableSize(dirs, flavour, root);
    const layout: TreeLayout = {
      dirs,
      number: new Map(dirs.map((dir, i) => [dir, i + 1])),
      extent: new Map(),
      size: new Map(),
      pathTableSize: size,
      pathTableL: next,
      pathTableM: 0,
    };
    next += sectorsFor(size);
    layout.pathTableM = next;
    next += sectorsFor(size);
    layouts.set(flavour, layout);
  }
  continuationSector = next++;
  for (const flavour of [primary, joliet]) {
    const layout = layouts.get(flavour);
    if (!layout) throw new AgentError('internal', 'ISO 9660 layout missing');
    for (const dir of layout.dirs) {
      const size = directorySize(dir, flavour, root);
      layout.extent.set(dir, next);
      layout.size.set(dir, size);
      next += size / SECTOR;
    }
  }
  const allFiles: FileNode[] = [];
  for (const dir of pathTableOrder(root, primary)) allFiles.push(...[...dir.files.values()].sort((a, b) => (a.name < b.name ? -1 : 1)));
  for (const file of allFiles) {
    file.extent = next;
    next += Math.ceil(file.data.length / SECTOR);
  }
  const totalSectors = next;
  const image = new Uint8Array(totalSectors * SECTOR);

  // ---- records ----
  const writeRecord = (at: number, flavour: Flavour, entry: Entry, isRootSelf: boolean): number => {
    const layout = layouts.get(flavour);
    if (!layout) throw new AgentError('internal', 'ISO 9660 layout missing');
    const identifier = identifierOf(entry, flavour);
    const systemUse = flavour.systemUse(entry, isRootSelf);
    const length = recordLength(identifier.length, systemUse.length);
    const target = entry.kind === 'file' ? undefined : entry.kind === 'parent' ? (entry.dir.parent ?? entry.dir) : entry.dir;
    const extent = entry.kind === 'file' ? entry.file.extent : (layout.extent.get(target as DirNode) ?? 0);
    const dataLength = entry.kind === 'file' ? entry.file.data.length : (layout.size.get(target as DirNode) ?? 0);
    image[at] = length;
    image[at + 1] = 0;
    both32(image, at + 2, extent);
    both32(image, at + 10, dataLength);
    image.set(recordDate(date), at + 18);
    image[at + 25] = entry.kind === 'file' ? 0 : 0x02;
    both16(image, at + 28, 1);
    image[at + 32] = identifier.length;
    image.set(identifier, at + 33);
    image.set(systemUse, at + 33 + identifier.length + (identifier.length % 2 === 0 ? 1 : 0));
    return length;
  };

  for (const flavour of [primary, joliet]) {
    const layout = layouts.get(flavour);
    if (!layout) throw new AgentError('internal', 'ISO 9660 layout missing');
    for (const dir of layout.dirs) {
      const start = (layout.extent.get(dir) ?? 0) * SECTOR;
      let at = start;
      for (const entry of entriesOf(dir, flavour)) {
        const length = recordLength(
          identifierOf(entry, flavour).length,
          flavour.systemUse(entry, entry.kind === 'self' && dir === root).length,
        );
        const sectorEnd = start + (Math.floor((at - start) / SECTOR) + 1) * SECTOR;
        if (at + length > sectorEnd) at = sectorEnd;
        at += writeRecord(at, flavour, entry, entry.kind === 'self' && dir === root);
      }
    }
    // Path tables (9.4): L with little-endian numbers, M with big-endian.
    for (const [sector, littleEndian] of [
      [layout.pathTableL, true],
      [layout.pathTableM, false],
    ] as const) {
      const view = new DataView(image.buffer);
      let at = sector * SECTOR;
      for (const dir of layout.dirs) {
        const identifier = dir === root ? Uint8Array.of(0) : flavour.dirIdentifier(dir);
        image[at] = identifier.length;
        view.setUint32(at + 2, layout.extent.get(dir) ?? 0, littleEndian);
        view.setUint16(at + 6, dir.parent ? (layout.number.get(dir.parent) ?? 1) : 1, littleEndian);
        image.set(identifier, at + 8);
        at += 8 + identifier.length + (identifier.length % 2);
      }
    }
  }
  image.set(er, continuationSector * SECTOR);
  for (const file of allFiles) image.set(file.data, file.extent * SECTOR);

  // ---- volume descriptors (8.4 primary, 8.5 supplementary, 8.3 terminator) ----
  for (const flavour of [primary, joliet]) {
    const layout = layouts.get(flavour);
    if (!layout) throw new AgentError('internal', 'ISO 9660 layout missing');
    const at = (flavour.joliet ? 17 : 16) * SECTOR;
    const descriptor = image.subarray(at, at + SECTOR);
    const ucs2 = flavour.joliet;
    descriptor[0] = flavour.joliet ? 2 : 1;
    descriptor.set(encoder.encode('CD001'), 1);
    descriptor[6] = 1;
    putText(descriptor, 8, 32, 'LINUX', ucs2);
    putText(descriptor, 40, 32, options.volumeId, ucs2);
    both32(descriptor, 80, totalSectors);
    if (flavour.joliet) descriptor.set(encoder.encode('%/E'), 88);
    both16(descriptor, 120, 1);
    both16(descriptor, 124, 1);
    both16(descriptor, 128, SECTOR);
    both32(descriptor, 132, layout.pathTableSize);
    new DataView(descriptor.buffer, descriptor.byteOffset).setUint32(140, layout.pathTableL, true);
    new DataView(descriptor.buffer, descriptor.byteOffset).setUint32(148, layout.pathTableM, false);
    // The root record in the descriptor is the bare 34-byte form, without system use.
    const rootRecord = descriptor.subarray(156, 156 + 34);
    rootRecord[0] = 34;
    both32(rootRecord, 2, layout.extent.get(root) ?? 0);
    both32(rootRecord, 10, layout.size.get(root) ?? 0);
    rootRecord.set(recordDate(date), 18);
    rootRecord[25] = 0x02;
    both16(rootRecord, 28, 1);
    rootRecord[32] = 1;
    putText(descriptor, 190, 128, '', ucs2);
    putText(descriptor, 318, 128, options.publisherId ?? '', ucs2);
    putText(descriptor, 446, 128, '', ucs2);
    putText(descriptor, 574, 128, options.applicationId ?? '', ucs2);
    putText(descriptor, 702, 37, '', ucs2);
    putText(descriptor, 739, 37, '', ucs2);
    putText(descriptor, 776, 37, '', ucs2);
    descriptor.set(volumeDate(date), 813);
    descriptor.set(volumeDate(date), 830);
    descriptor.set(volumeDate(undefined), 847);
    descriptor.set(volumeDate(undefined), 864);
    descriptor[881] = 1;
  }
  const terminator = image.subarray(18 * SECTOR, 19 * SECTOR);
  terminator[0] = 255;
  terminator.set(encoder.encode('CD001'), 1);
  terminator[6] = 1;
  return image;
}
