/**
 * Debian packages as build inputs: fetched with `apt-get download` (no
 * install, so no root-only side effects on the build machine) into a cache
 * directory that later builds reuse without the network, and unpacked with
 * `dpkg-deb -x`. The cache is what pins the inputs: delete it to take the
 * archive's current versions.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export class PackageError extends Error {
  readonly packageName: string;
  constructor(packageName: string, message: string, options?: { cause?: unknown }) {
    super(`Debian package ${packageName}: ${message}`, options);
    this.name = 'PackageError';
    this.packageName = packageName;
  }
}

function stderrOf(error: unknown): string {
  const stderr = (error as { stderr?: unknown }).stderr;
  return typeof stderr === 'string' && stderr.trim() !== ''
    ? stderr.trim().split('\n').slice(-3).join(' / ')
    : error instanceof Error
      ? error.message
      : String(error);
}

/** The cached .deb of a package (file names are NAME_VERSION_ARCH.deb), or null. */
export async function cachedDeb(cacheDir: string, name: string): Promise<string | null> {
  const files = await readdir(cacheDir).catch(() => [] as string[]);
  const matches = files.filter((f) => f.startsWith(`${name}_`) && f.endsWith('.deb')).sort();
  return matches.length > 0 ? path.join(cacheDir, matches.at(-1)!) : null;
}

/**
 * A metapackage such as linux-image-amd64 names the versioned kernel
 * package it depends on; apt-cache reads the local lists, no network.
 * A cached versioned kernel package wins, so a second build stays offline
 * and unchanged even after `apt-get update` brought a newer kernel.
 */
export async function resolveKernelPackage(meta: string, cacheDir: string): Promise<string> {
  if (/^linux-image-\d/.test(meta)) return meta;
  const flavour = meta.replace(/^linux-image-/, '');
  const cached = (await readdir(cacheDir).catch(() => [] as string[]))
    .filter((f) => new RegExp(`^linux-image-\\d[^_]*-${flavour}_.*\\.deb$`).test(f))
    .sort();
  if (cached.length > 0) return cached.at(-1)!.split('_')[0]!;
  let stdout: string;
  try {
    ({ stdout } = await run('apt-cache', ['depends', meta]));
  } catch (error) {
    throw new PackageError(meta, `apt-cache cannot resolve it (run apt-get update first): ${stderrOf(error)}`, { cause: error });
  }
  const match = /Depends: (linux-image-\d\S*)/.exec(stdout);
  if (!match) throw new PackageError(meta, 'names no versioned linux-image package in apt-cache depends');
  return match[1]!;
}

/** The package's .deb from the cache, downloading it first when absent. */
export async function fetchDeb(cacheDir: string, name: string): Promise<string> {
  const cached = await cachedDeb(cacheDir, name);
  if (cached) return cached;
  await mkdir(cacheDir, { recursive: true });
  // Downloaded aside and renamed in, so a build running beside this one never takes a half-written file.
  const staging = await mkdtemp(path.join(cacheDir, '.download-'));
  try {
    try {
      await run('apt-get', ['download', name], { cwd: staging, maxBuffer: 16 * 1024 * 1024 });
    } catch (error) {
      throw new PackageError(name, `apt-get download failed: ${stderrOf(error)}`, { cause: error });
    }
    const downloaded = await cachedDeb(staging, name);
    if (!downloaded) throw new PackageError(name, `apt-get download left no ${name}_*.deb`);
    await rename(downloaded, path.join(cacheDir, path.basename(downloaded)));
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return (await cachedDeb(cacheDir, name))!;
}

export async function extractDeb(deb: string, into: string): Promise<void> {
  await mkdir(into, { recursive: true });
  try {
    await run('dpkg-deb', ['-x', deb, into]);
  } catch (error) {
    throw new PackageError(path.basename(deb), `dpkg-deb -x failed: ${stderrOf(error)}`, { cause: error });
  }
}
