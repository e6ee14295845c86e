/**
 * A kernel package's module tree, as the ramdisk builds read it: every .ko
 * under lib/modules/<version>/kernel by module name, and the closure of the
 * wanted modules in load order (modules.ts), skipping what is built in.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadOrder, modinfoDepends, ModuleError, moduleName } from './modules.ts';

export interface ModuleSelection {
  /** Module names, each after its dependencies. */
  readonly order: readonly string[];
  /** Path of each selected module under lib/modules/<version>/. */
  readonly files: ReadonlyMap<string, string>;
  readonly contents: ReadonlyMap<string, Buffer>;
}

/** `moduleRoot` is lib/modules/<version> of an unpacked kernel package. */
export async function selectModules(moduleRoot: string, wanted: readonly string[]): Promise<ModuleSelection> {
  const builtinText = await readFile(path.join(moduleRoot, 'modules.builtin'), 'utf8').catch(() => '');
  const builtin = new Set(builtinText.split('\n').filter(Boolean).map(moduleName));
  const files = new Map<string, string>();
  for (const entry of (await readdir(path.join(moduleRoot, 'kernel'), { recursive: true })).sort())
    if (entry.endsWith('.ko')) files.set(moduleName(entry), `kernel/${entry}`);
  const names = wanted.map(moduleName).filter((n) => !builtin.has(n));
  const depends = new Map<string, string[]>();
  const contents = new Map<string, Buffer>();
  // loadOrder is synchronous: read the closure's modules first, breadth-first.
  const queue = [...names];
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (depends.has(name)) continue;
    const file = files.get(name);
    if (!file) throw new ModuleError(name, `not in ${moduleRoot} and not built in`);
    const data = await readFile(path.join(moduleRoot, file));
    contents.set(name, data);
    const deps = modinfoDepends(data).filter((d) => !builtin.has(d));
    depends.set(name, deps);
    queue.push(...deps);
  }
  const order = loadOrder(names, files, (name) => depends.get(name) ?? []);
  return { order, files: new Map(order.map((n) => [n, files.get(n)!])), contents };
}
