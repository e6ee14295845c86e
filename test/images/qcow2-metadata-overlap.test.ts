/**
 * Images made by qemu-img, then corrupted so one table entry (L1, L2 or
 * refcount table) points into the image's own metadata: each must be refused
 * at open and at inspect, with the entry named, before any extent is read.
 * qemu-img converts several of these to zeros or to the metadata's bytes;
 * we refuse them all.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2FormatError } from '../../controller/images/errors.ts';
import { parseQcow2Header, type Qcow2Header } from '../../controller/images/qcow2/header.ts';
import { inspectQcow2 } from '../../controller/images/qcow2/inspect.ts';
import { Qcow2Image } from '../../controller/images/qcow2/reader.ts';
import { BytesReader } from '../../controller/images/random-access.ts';
import { qemu } from './qemu-img.testutil.ts';

const OFFSET_MASK = 0x00fffffffffffe00n;
const COPIED = 1n << 63n;
const COMPRESSED = 1n << 62n;

/** Where every table and every pointer of a seed image is. */
interface Seed {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly header: Qcow2Header;
  /** Host cluster offsets holding metadata (not the header cluster: offset 0 means "unallocated"). */
  readonly metadataClusters: readonly number[];
  readonly pointers: readonly Pointer[];
}

interface Pointer {
  readonly kind: 'l1' | 'l2' | 'compressed' | 'refcount';
  /** Byte offset of the 8-byte entry in the file. */
  readonly at: number;
  /** How the error must name it. */
  readonly name: string;
}

let dir: string;
const seeds: Seed[] = [];

function describeSeed(name: string, bytes: Uint8Array): Seed {
  const header = parseQcow2Header(bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const cluster = header.clusterSize;
  const metadata = new Set<number>();
  const pointers: Pointer[] = [];
  const clustersOf = (start: number, length: number): void => {
    for (let at = Math.floor(start / cluster) * cluster; at < start + length; at += cluster) metadata.add(at);
  };
  clustersOf(header.l1TableOffset, header.l1Size * 8);
  clustersOf(header.refcountTableOffset, header.refcountTableClusters * cluster);
  for (let index = 0; index < (header.refcountTableClusters * cluster) / 8; index++) {
    const at = header.refcountTableOffset + index * 8;
    const block = Number(view.getBigUint64(at) & ~0x1ffn);
    if (block === 0) continue;
    metadata.add(block);
    pointers.push({ kind: 'refcount', at, name: `refcount table entry ${index}` });
  }
  const l2Entries = cluster / 8;
  const l1Entries = Math.ceil(Math.ceil(header.virtualSize / cluster) / l2Entries);
  for (let l1Index = 0; l1Index < l1Entries; l1Index++) {
    const at = header.l1TableOffset + l1Index * 8;
    const table = Number(view.getBigUint64(at) & OFFSET_MASK);
    if (table === 0) continue;
    metadata.add(table);
    pointers.push({ kind: 'l1', at, name: `L1 entry ${l1Index}` });
    for (let index = 0; index < l2Entries; index++) {
      const entryAt = table + index * 8;
      const entry = view.getBigUint64(entryAt);
      if ((entry & COMPRESSED) !== 0n) pointers.push({ kind: 'compressed', at: entryAt, name: `L2 entry ${index} of L1 entry ${l1Index}` });
      else if ((entry & OFFSET_MASK) !== 0n) pointers.push({ kind: 'l2', at: entryAt, name: `L2 entry ${index} of L1 entry ${l1Index}` });
    }
  }
  metadata.delete(0);
  return { name, bytes, header, metadataClusters: [...metadata].sort((a, b) => a - b), pointers };
}

async function makeSeed(name: string, options: string, size: string, writes: readonly string[], compress = false): Promise<void> {
  const path = join(dir, `${name}.qcow2`);
  await qemu('qemu-img', ['create', '-f', 'qcow2', '-o', options, path, size]);
  await qemu('qemu-io', ['-f', 'qcow2', ...writes.flatMap((w) => ['-c', w]), path]);
  if (compress) {
    await qemu('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', options, path, `${path}.c`]);
    seeds.push(describeSeed(name, new Uint8Array(await readFile(`${path}.c`))));
  } else {
    seeds.push(describeSeed(name, new Uint8Array(await readFile(path))));
  }
}

/** Points `pointer` at host offset `target`, keeping the entry's kind. */
function aim(seed: Seed, pointer: Pointer, target: number): Uint8Array {
  const bytes = seed.bytes.slice();
  const view = new DataView(bytes.buffer);
  const value =
    pointer.kind === 'refcount' ? BigInt(target) : pointer.kind === 'compressed' ? COMPRESSED | BigInt(target) : COPIED | BigInt(target);
  view.setBigUint64(pointer.at, value);
  return bytes;
}

async function refusal(bytes: Uint8Array): Promise<{ open: unknown; inspect: unknown }> {
  const open = await Qcow2Image.open(new BytesReader(bytes)).then(
    () => undefined,
    (err: unknown) => err,
  );
  const inspect = await inspectQcow2(new BytesReader(bytes)).then(
    () => undefined,
    (err: unknown) => err,
  );
  return { open, inspect };
}

function seed(name: string): Seed {
  const found = seeds.find((s) => s.name === name);
  if (found === undefined) throw new Error(`no seed ${name}`);
  return found;
}

function pointer(s: Seed, kind: Pointer['kind'], nth = 0): Pointer {
  const found = s.pointers.filter((p) => p.kind === kind)[nth];
  if (found === undefined) throw new Error(`${s.name} has no ${kind} pointer ${nth}`);
  return found;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bm-qcow2-overlap-'));
  // Two L2 tables (each maps 512 MiB with 64 KiB clusters).
  await makeSeed('v3-64k', 'compat=1.1', '1G', ['write -P 0x5a 0 200k', 'write -P 0xa5 600M 64k']);
  await makeSeed('v2-64k', 'compat=0.10', '1G', ['write -P 0x5a 0 200k', 'write -P 0xa5 600M 64k']);
  // Many small tables and several refcount blocks.
  await makeSeed('v3-512', 'compat=1.1,cluster_size=512', '4M', ['write -P 0x5a 0 100k', 'write -P 0x33 1500k 520k']);
  await makeSeed('v3-64k-compressed', 'compat=1.1', '4M', ['write -P 0x5a 0 1M', 'write -P 0x33 3M 200k'], true);
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('qcow2 images from qemu-img whose tables point into their own metadata', () => {
  it('reads every seed untouched', async () => {
    for (const s of seeds) expect(await refusal(s.bytes), s.name).toEqual({ open: undefined, inspect: undefined });
  });

  const cases: {
    name: string;
    seed: string;
    pointer: Pointer['kind'];
    nth?: number;
    target: (h: Qcow2Header, s: Seed) => number;
    field: string;
    into: RegExp;
  }[] = [
    {
      name: 'an L2 data entry at the L1 table',
      seed: 'v3-64k',
      pointer: 'l2',
      target: (h) => h.l1TableOffset,
      field: 'l2_entry',
      into: /into the L1 table/,
    },
    {
      name: 'an L2 data entry at the refcount table',
      seed: 'v3-64k',
      pointer: 'l2',
      nth: 1,
      target: (h) => h.refcountTableOffset,
      field: 'l2_entry',
      into: /into the refcount table/,
    },
    {
      name: 'an L2 data entry at the other L2 table',
      seed: 'v2-64k',
      pointer: 'l2',
      target: (_h, s) => Number(new DataView(s.bytes.buffer).getBigUint64(pointer(s, 'l1', 1).at) & OFFSET_MASK),
      field: 'l2_entry',
      into: /into the L2 table of L1 entry 1/,
    },
    {
      name: 'an L2 data entry at a refcount block',
      seed: 'v3-512',
      pointer: 'l2',
      nth: 3,
      target: (_h, s) => Number(new DataView(s.bytes.buffer).getBigUint64(pointer(s, 'refcount', 1).at) & ~0x1ffn),
      field: 'l2_entry',
      into: /into the refcount block of refcount table entry 1/,
    },
    {
      name: 'a compressed entry at the L1 table',
      seed: 'v3-64k-compressed',
      pointer: 'compressed',
      target: (h) => h.l1TableOffset,
      field: 'l2_entry',
      into: /into the L1 table/,
    },
    {
      name: 'an L1 entry at the refcount table',
      seed: 'v3-64k',
      pointer: 'l1',
      target: (h) => h.refcountTableOffset,
      field: 'l1_entry',
      into: /into the refcount table/,
    },
    {
      name: 'a refcount block at the L1 table',
      seed: 'v3-64k',
      pointer: 'refcount',
      target: (h) => h.l1TableOffset,
      field: 'refcount_table_entry',
      into: /into the L1 table/,
    },
  ];

  it.each(cases)(
    'refuses $name, naming the entry, at open and at inspect',
    async ({ seed: seedName, pointer: kind, nth, target, field, into }) => {
      const s = seed(seedName);
      const p = pointer(s, kind, nth ?? 0);
      const { open, inspect } = await refusal(aim(s, p, target(s.header, s)));
      for (const err of [open, inspect]) {
        expect(err).toBeInstanceOf(Qcow2FormatError);
        expect(err).toMatchObject({ field, message: expect.stringMatching(new RegExp(`${p.name}( \\(guest cluster \\d+\\))? points at`)) });
        expect(err).toMatchObject({ message: expect.stringMatching(into) });
      }
    },
  );

  it('refuses any table entry aimed at any metadata cluster, naming that entry (property)', async () => {
    for (const s of seeds) {
      await fc.assert(
        fc.asyncProperty(
          fc.nat(s.pointers.length - 1),
          fc.nat(s.metadataClusters.length - 1),
          fc.nat(s.header.clusterSize / 512 - 1),
          async (p, t, sector) => {
            const p0 = s.pointers[p] as Pointer;
            // Compressed data may start mid-cluster; everything else is cluster aligned.
            const target = (s.metadataClusters[t] as number) + (p0.kind === 'compressed' ? sector * 512 : 0);
            // Aiming an L1 or refcount entry at the table it already names changes nothing.
            if (Number(new DataView(s.bytes.buffer).getBigUint64(p0.at) & OFFSET_MASK) === target) return;
            const { open, inspect } = await refusal(aim(s, p0, target));
            for (const err of [open, inspect]) {
              expect(err, `${s.name}: ${p0.name} -> ${target.toString(16)}`).toBeInstanceOf(Qcow2FormatError);
              // The edited entry is named, either as the one pointing or as the one pointed into.
              expect((err as Error).message).toContain(p0.name);
            }
          },
        ),
        { numRuns: 150 },
      );
    }
  }, 120_000);
});
