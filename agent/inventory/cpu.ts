/**
 * CPUs from /proc/cpuinfo. The format differs per architecture: x86 has
 * `model name` and `flags` per processor; arm64 has `Features` and, instead
 * of a model name, `CPU implementer`/`CPU part` codes; ppc64le has `cpu`.
 * Every architecture has one `processor` line per logical CPU, which is what
 * the count is.
 */
import { arch as nodeArch } from 'node:os';
import { InventoryError } from '../errors.ts';
import { readTrimmed, under } from './sysfs.ts';
import type { CpuInventory } from './types.ts';

export interface ParsedCpuinfo {
  readonly count: number;
  readonly model: string;
  readonly flags: readonly string[];
  /** A guess from the text alone, for fixture trees without /proc/sys/kernel/arch. */
  readonly archHint: string | undefined;
}

const MODEL_KEYS = ['model name', 'cpu model', 'cpu', 'Processor', 'Hardware'] as const;

export function parseCpuinfo(text: string): ParsedCpuinfo {
  let count = 0;
  const first = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key === 'processor' && /^\d+$/.test(value)) count++;
    if (!first.has(key)) first.set(key, value);
  }
  let model = '';
  for (const key of MODEL_KEYS) {
    const value = first.get(key);
    if (value) {
      model = value;
      break;
    }
  }
  const flagText = first.get('flags') ?? first.get('Features') ?? '';
  const flags = flagText.split(/\s+/).filter((flag) => flag !== '');
  let archHint: string | undefined;
  if (first.has('flags')) archHint = flags.includes('lm') ? 'x86_64' : 'i686';
  else if (first.get('CPU architecture') === '8') archHint = 'aarch64';
  else if (first.has('cpu') && /POWER/i.test(first.get('cpu') ?? '')) archHint = 'ppc64le';
  return { count, model, flags, archHint };
}

/** Node's process.arch names mapped to the kernel's (`uname -m`). */
const NODE_TO_KERNEL_ARCH: Readonly<Record<string, string>> = {
  x64: 'x86_64',
  arm64: 'aarch64',
  ia32: 'i686',
  arm: 'armv7l',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loongarch64',
};

export function kernelArchFromNode(name: string): string {
  return NODE_TO_KERNEL_ARCH[name] ?? name;
}

export async function readCpu(root: string): Promise<CpuInventory> {
  const path = under(root, 'proc/cpuinfo');
  const text = await readTrimmed(path);
  if (text === undefined) throw new InventoryError(`cannot read ${path}`, { path });
  const parsed = parseCpuinfo(text);
  if (parsed.count === 0) throw new InventoryError(`${path} lists no processor`, { path });
  // /proc/sys/kernel/arch is the kernel's own answer and lives under the
  // root, so a fixture tree can say what it was captured on. Only the real
  // machine may fall back to the running Node's architecture.
  const arch =
    (await readTrimmed(under(root, 'proc/sys/kernel/arch'))) ||
    (root === '/' ? kernelArchFromNode(nodeArch()) : undefined) ||
    parsed.archHint ||
    'unknown';
  return { count: parsed.count, model: parsed.model, arch, flags: parsed.flags };
}
