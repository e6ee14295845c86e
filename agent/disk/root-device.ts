/**
 * Root device hints: which of the machine's disks receives the image. The
 * hint names and the size operators follow Ironic's `root_device` property
 * so operators can carry theirs over:
 * - `size`: GiB, compared with the disk's size in whole GiB (rounded down),
 *   either a number (equality) or a string with an operator:
 *   `"== 100"`, `"!= 100"`, `">= 100"`, `"<= 2000"`, `"> 100"`, `"< 100"`;
 * - `serial`, `wwn`, `model`, `name`: equal (case and surrounding blanks
 *   ignored), or `"s== X"` (same), or `"<in> X"` (contains X);
 *   `name` may be given with or without `/dev/`, `wwn` as `0x…` or `naa.…`;
 * - `rotational`: true/false (or the strings "true"/"false"/"1"/"0").
 * All given hints must match. Among the matching disks that are large
 * enough for the image, the smallest wins (ties: by name), so an unhinted
 * deploy lands on the smallest disk that fits and leaves the big ones for
 * data. If disks match but none is large enough, the error says so before a
 * byte is written.
 */
import { DiskTooSmallError, InvalidHintError, NoMatchingDiskError } from '../errors.ts';
import { normaliseWwn, type DiskInventory } from '../inventory/index.ts';

export interface RootDeviceHints {
  readonly size?: number | string;
  readonly serial?: string;
  readonly wwn?: string;
  readonly model?: string;
  readonly name?: string;
  readonly rotational?: boolean | string;
}

const GIB = 1024 ** 3;

type SizeOperator = '==' | '!=' | '>=' | '<=' | '>' | '<';
const SIZE_TESTS: Readonly<Record<SizeOperator, (disk: number, hint: number) => boolean>> = {
  '==': (disk, hint) => disk === hint,
  '!=': (disk, hint) => disk !== hint,
  '>=': (disk, hint) => disk >= hint,
  '<=': (disk, hint) => disk <= hint,
  '>': (disk, hint) => disk > hint,
  '<': (disk, hint) => disk < hint,
};

type DiskTest = (disk: DiskInventory) => boolean;

export function parseSizeHint(hint: number | string): DiskTest {
  if (typeof hint === 'number') {
    if (!Number.isInteger(hint) || hint < 0) throw new InvalidHintError('size', `expected whole GiB, got ${hint}`);
    return (disk) => Math.floor(disk.sizeBytes / GIB) === hint;
  }
  const match = /^\s*(==|!=|>=|<=|>|<)?\s*(\d+)\s*$/.exec(hint);
  if (!match?.[2]) throw new InvalidHintError('size', `expected GiB with an optional operator (== != >= <= > <), got "${hint}"`);
  const operator = (match[1] ?? '==') as SizeOperator;
  const gib = Number(match[2]);
  const test = SIZE_TESTS[operator];
  return (disk) => test(Math.floor(disk.sizeBytes / GIB), gib);
}

function parseStringHint(field: string, hint: string, normalise: (value: string) => string): (value: string) => boolean {
  const contains = /^\s*<in>\s*(.*)$/.exec(hint);
  if (contains) {
    const wanted = normalise(contains[1] ?? '');
    if (wanted === '') throw new InvalidHintError(field, '"<in>" needs a value');
    return (value) => normalise(value).includes(wanted);
  }
  const equal = /^\s*s==\s*(.*)$/.exec(hint);
  const wanted = normalise(equal ? (equal[1] ?? '') : hint);
  if (wanted === '') throw new InvalidHintError(field, 'empty value');
  return (value) => normalise(value) === wanted;
}

const plain = (value: string): string => value.trim().toLowerCase();
const deviceName = (value: string): string => plain(value).replace(/^\/dev\//, '');
const wwn = (value: string): string => normaliseWwn(plain(value));

function parseRotational(hint: boolean | string): boolean {
  if (typeof hint === 'boolean') return hint;
  const text = plain(hint);
  if (['true', '1', 'yes', 'on'].includes(text)) return true;
  if (['false', '0', 'no', 'off'].includes(text)) return false;
  throw new InvalidHintError('rotational', `expected true or false, got "${hint}"`);
}

/** One predicate for all hints; throws InvalidHintError for hints it cannot read. */
export function compileHints(hints: RootDeviceHints): DiskTest {
  const tests: DiskTest[] = [];
  if (hints.size !== undefined) tests.push(parseSizeHint(hints.size));
  const strings = [
    ['serial', hints.serial, plain, (disk: DiskInventory) => disk.serial],
    ['wwn', hints.wwn, wwn, (disk: DiskInventory) => disk.wwn],
    ['model', hints.model, plain, (disk: DiskInventory) => disk.model],
    ['name', hints.name, deviceName, (disk: DiskInventory) => disk.name],
  ] as const;
  for (const [field, hint, normalise, value] of strings) {
    if (hint === undefined) continue;
    const test = parseStringHint(field, hint, normalise);
    tests.push((disk) => test(value(disk)));
  }
  if (hints.rotational !== undefined) {
    const rotational = parseRotational(hints.rotational);
    tests.push((disk) => disk.rotational === rotational);
  }
  return (disk) => tests.every((test) => test(disk));
}

function describeHints(hints: RootDeviceHints): string {
  return JSON.stringify(hints);
}

/**
 * The disk to deploy an image of `imageSize` bytes to. Throws
 * NoMatchingDiskError when no disk matches the hints (or there is no disk),
 * DiskTooSmallError when disks match but the largest of them is too small.
 */
export function selectRootDisk(disks: readonly DiskInventory[], imageSize: number, hints: RootDeviceHints = {}): DiskInventory {
  const matches = compileHints(hints);
  const candidates = disks.filter(matches);
  if (candidates.length === 0) {
    throw new NoMatchingDiskError(
      disks.length === 0 ? 'the machine has no usable disk' : `no disk matches the root device hints ${describeHints(hints)}`,
      { hints: describeHints(hints), disks: disks.map((disk) => disk.name).join(',') },
    );
  }
  const bySize = [...candidates].sort((a, b) => a.sizeBytes - b.sizeBytes || a.name.localeCompare(b.name));
  const chosen = bySize.find((disk) => disk.sizeBytes >= imageSize);
  if (!chosen) {
    const largest = bySize[bySize.length - 1];
    if (!largest) throw new NoMatchingDiskError('no candidate disk');
    throw new DiskTooSmallError(largest.path, largest.sizeBytes, imageSize);
  }
  return chosen;
}
