/**
 * Fuzzes the qcow2 reader with mutated and truncated images made by qemu-img.
 * Every outcome must be a typed BmError or a complete, well-formed read; never
 * another exception, never a hang, never a large allocation. Where both we
 * and qemu-img read a mutated image, the bytes must agree.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BmError } from '../../controller/errors.ts';
import { rawContentSha256 } from '../../controller/images/digest.ts';
import { extentEnd } from '../../controller/images/extents.ts';
import { parseQcow2Header } from '../../controller/images/qcow2/header.ts';
import { inspectQcow2 } from '../../controller/images/qcow2/inspect.ts';
import { Qcow2Image } from '../../controller/images/qcow2/reader.ts';
import { BytesReader } from '../../controller/images/random-access.ts';
import { fileSha256, qemu } from './qemu-img.testutil.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
/** A mutated image may legitimately describe a huge disk; read this much of it and stop. */
const READ_BUDGET = 64 * MiB;
const PER_CASE_MS = 3000;
const HEAP_GROWTH_LIMIT = 256 * MiB;

interface Seed {
  readonly name: string;
  readonly bytes: Uint8Array;
  /** Byte ranges holding metadata (header, L1, L2 tables), where mutations matter most. */
  readonly metadata: readonly [number, number][];
}

let dir: string;
const seeds: Seed[] = [];

async function makeSeed(name: string, args: readonly string[], writes: readonly string[]): Promise<void> {
  const path = join(dir, `${name}.qcow2`);
  await qemu('qemu-img', ['create', '-f', 'qcow2', ...args, path, '2M']);
  await qemu('qemu-io', ['-f', 'qcow2', ...writes.flatMap((w) => ['-c', w]), path]);
  if (name.includes('compressed')) {
    await qemu('qemu-img', ['convert', '-c', '-O', 'qcow2', ...args, path, `${path}.c`]);
    await run('mv', [`${path}.c`, path]);
  }
  const bytes = new Uint8Array(await readFile(path));
  const header = parseQcow2Header(bytes);
  const metadata: [number, number][] = [[0, header.headerLength + 64]];
  metadata.push([header.l1TableOffset, header.l1TableOffset + header.l1Size * 8]);
  const l1 = new DataView(bytes.buffer, bytes.byteOffset + header.l1TableOffset, header.l1Size * 8);
  for (let i = 0; i < header.l1Size; i++) {
    const l2 = Number(l1.getBigUint64(i * 8) & 0x00fffffffffffe00n);
    if (l2 !== 0) metadata.push([l2, Math.min(bytes.length, l2 + Math.min(header.clusterSize, 2048))]);
  }
  seeds.push({ name, bytes, metadata });
}

const WRITES = ['write -P 0x5a 0 100k', 'write -P 0xa5 300k 7k', 'write -z 64k 64k', 'write -P 0x33 1500k 520k'];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bm-qcow2-fuzz-'));
  await makeSeed('v3-64k', ['-o', 'compat=1.1'], WRITES);
  await makeSeed(
    'v2-64k',
    ['-o', 'compat=0.10'],
    WRITES.filter((w) => !w.includes('-z')),
  );
  await makeSeed('v3-512', ['-o', 'cluster_size=512'], WRITES);
  await makeSeed('v3-64k-compressed', ['-o', 'compat=1.1'], WRITES);
  await makeSeed('v3-extl2', ['-o', 'extended_l2=on'], WRITES);
  await makeSeed('v3-64k-compressed-zstd', ['-o', 'compat=1.1,compression_type=zstd'], WRITES);
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Outcome =
  | { readonly kind: 'error'; readonly error: BmError }
  | { readonly kind: 'read'; readonly sha256: string | undefined; readonly complete: boolean };

/** Inspects and reads an image within the budget; rethrows anything that is not a typed error. */
async function readWithinBudget(bytes: Uint8Array): Promise<Outcome> {
  try {
    await inspectQcow2(new BytesReader(bytes));
    const image = await Qcow2Image.open(new BytesReader(bytes));
    if (image.virtualSize <= READ_BUDGET) {
      return { kind: 'read', sha256: (await rawContentSha256(image)).sha256, complete: true };
    }
    let position = 0;
    for await (const extent of image.extents()) {
      if (extent.offset !== position) throw new Error(`extent at ${extent.offset}, expected ${position}`);
      position = extentEnd(extent);
      if (position > READ_BUDGET) break;
    }
    return { kind: 'read', sha256: undefined, complete: false };
  } catch (err) {
    if (err instanceof BmError) return { kind: 'error', error: err };
    throw err;
  }
}

const mutation = (seed: Seed) =>
  fc.oneof(
    // A byte anywhere in the metadata.
    fc.record({
      kind: fc.constant('byte' as const),
      region: fc.nat(seed.metadata.length - 1),
      at: fc.nat(),
      value: fc.nat(255),
    }),
    // An interesting 64-bit value at an 8-byte-aligned metadata slot.
    fc.record({
      kind: fc.constant('u64' as const),
      region: fc.nat(seed.metadata.length - 1),
      at: fc.nat(),
      value: fc.constantFrom(
        0n,
        1n,
        1n << 63n,
        (1n << 63n) | 0x10000n,
        (1n << 62n) | 0x10000n,
        0xffffffffffffffffn,
        BigInt(seed.bytes.length),
        BigInt(seed.bytes.length - 512),
        (1n << 63n) | BigInt(seed.bytes.length - 65536),
        0x00fffffffffffe00n,
        (1n << 62n) | (0xffn << 54n) | 0x30000n,
      ),
    }),
    // A 32-bit header field set to an extreme.
    fc.record({
      kind: fc.constant('u32' as const),
      region: fc.constant(0),
      at: fc.nat(25),
      value: fc.constantFrom(0, 1, 8, 9, 21, 22, 0x7fffffff, 0xffffffff),
    }),
  );

function mutate(seed: Seed, edits: readonly Edit[], truncateTo: number | undefined): Uint8Array {
  const bytes = seed.bytes.slice();
  const view = new DataView(bytes.buffer);
  for (const edit of edits) {
    const [start, end] = seed.metadata[edit.region] ?? [0, 72];
    const span = Math.max(1, end - start);
    if (edit.kind === 'byte') {
      const at = start + (edit.at % span);
      if (at < bytes.length) bytes[at] = edit.value;
    } else if (edit.kind === 'u64') {
      const at = start + (edit.at % Math.max(1, Math.floor(span / 8))) * 8;
      if (at + 8 <= bytes.length) view.setBigUint64(at, edit.value);
    } else {
      view.setUint32(edit.at * 4, edit.value);
    }
  }
  return truncateTo === undefined ? bytes : bytes.subarray(0, truncateTo % (bytes.length + 1));
}

type Edit =
  | { readonly kind: 'byte'; readonly region: number; readonly at: number; readonly value: number }
  | { readonly kind: 'u64'; readonly region: number; readonly at: number; readonly value: bigint }
  | { readonly kind: 'u32'; readonly region: number; readonly at: number; readonly value: number };

function heapNow(): number {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

describe('qcow2 fuzz', () => {
  it('reads every unmutated seed image', async () => {
    for (const seed of seeds) expect(await readWithinBudget(seed.bytes), seed.name).toMatchObject({ kind: 'read', complete: true });
  });

  it('meets thousands of mutated and truncated images with a typed error or a complete read, quickly and in bounded memory', async () => {
    const baseline = heapNow();
    let peak = 0;
    const outcomes = { error: 0, read: 0 };
    for (const seed of seeds) {
      await fc.assert(
        fc.asyncProperty(
          fc.array(mutation(seed), { minLength: 1, maxLength: 6 }),
          fc.option(fc.nat(), { freq: 5 }),
          async (edits, truncateTo) => {
            const bytes = mutate(seed, edits as readonly Edit[], truncateTo ?? undefined);
            const started = performance.now();
            const outcome = await readWithinBudget(bytes);
            outcomes[outcome.kind]++;
            expect(performance.now() - started).toBeLessThan(PER_CASE_MS);
            peak = Math.max(peak, heapNow() - baseline);
            expect(heapNow() - baseline).toBeLessThan(HEAP_GROWTH_LIMIT);
          },
        ),
        { numRuns: 800 },
      );
    }
    // Both outcomes must actually occur, or the fuzzer is not exploring.
    expect(outcomes.error).toBeGreaterThan(100);
    expect(outcomes.read).toBeGreaterThan(100);
    console.log(`qcow2 fuzz: ${JSON.stringify(outcomes)}, peak heap growth ${(peak / MiB).toFixed(1)} MiB`);
  }, 300_000);

  it('agrees with qemu-img on every mutated image both of us can read', async () => {
    let compared = 0;
    for (const seed of seeds) {
      await fc.assert(
        fc.asyncProperty(fc.array(mutation(seed), { minLength: 1, maxLength: 3 }), fc.nat(), async (edits, id) => {
          const bytes = mutate(seed, edits as readonly Edit[], undefined);
          const ours = await readWithinBudget(bytes);
          if (ours.kind !== 'read' || !ours.complete) return;
          const path = join(dir, `mutant-${id}.qcow2`);
          const rawPath = `${path}.raw`;
          await writeFile(path, bytes);
          try {
            await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, rawPath], { timeout: 20_000 });
          } catch {
            return; // qemu-img refuses it: we are allowed to be more lenient only where reading is well defined
          } finally {
            await rm(path, { force: true });
          }
          try {
            compared++;
            expect(
              ours.sha256,
              `seed ${seed.name}, edits ${JSON.stringify(edits, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(16) : v))}`,
            ).toBe(await fileSha256(rawPath));
          } finally {
            await rm(rawPath, { force: true });
          }
        }),
        { numRuns: 40 },
      );
    }
    expect(compared).toBeGreaterThan(20);
  }, 300_000);
});
