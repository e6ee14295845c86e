/**
 * Which kernel modules go into the ramdisk, and in what order they load.
 * Debian's kernel package ships the .ko files but no modules.dep (depmod
 * writes it when the package is installed), and the ramdisk has no kmod:
 * the dependencies are read from each module's .modinfo section
 * ("depends=a,b"), closed over, and ordered so a module follows what it
 * needs, for busybox insmod to load one by one.
 */

export class ModuleError extends Error {
  readonly module: string;
  constructor(module: string, message: string) {
    super(`kernel module ${module}: ${message}`);
    this.name = 'ModuleError';
    this.module = module;
  }
}

/** Module names compare with - and _ alike, as the kernel's do. */
export function moduleName(fileOrName: string): string {
  return (fileOrName.split('/').pop() ?? '').replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** The "depends=" list of a module's .modinfo strings (NUL-separated key=value pairs). */
export function modinfoDepends(ko: Uint8Array): string[] {
  const text = Buffer.from(ko.buffer, ko.byteOffset, ko.byteLength).toString('latin1');
  const match = /(?:^|\0)depends=([^\0]*)\0/.exec(text);
  if (!match) return [];
  return match[1]!
    .split(',')
    .filter((d) => d !== '')
    .map(moduleName);
}

/**
 * The wanted modules and everything they depend on, each after its
 * dependencies; among equals, in the order wanted (so virtio comes before
 * the long list of server NICs). `files` maps module name to its path
 * under lib/modules/<version>/; `depends` reads a module's dependencies.
 */
export function loadOrder(
  wanted: readonly string[],
  files: ReadonlyMap<string, string>,
  depends: (name: string) => readonly string[],
): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, chain: readonly string[]): void => {
    const seen = state.get(name);
    if (seen === 'done') return;
    if (seen === 'visiting') throw new ModuleError(name, `dependency cycle: ${[...chain, name].join(' -> ')}`);
    if (!files.has(name))
      throw new ModuleError(
        name,
        chain.length > 0
          ? `needed by ${chain.at(-1)} but not in the kernel package (built in?)`
          : 'not in the kernel package (built in, or a wrong name?)',
      );
    state.set(name, 'visiting');
    for (const dep of depends(name)) visit(dep, [...chain, name]);
    state.set(name, 'done');
    order.push(name);
  };
  for (const name of wanted) visit(moduleName(name), []);
  return order;
}
