/**
 * npm run build:ramdisk, for real: Debian's packages (from ramdisk/cache, or
 * downloaded once), the project's Node and the agent bundle. Two builds of
 * the same inputs give the same bytes, and the archive holds what the init
 * needs, as GNU cpio lists it.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { buildRamdisk } from '../../ramdisk/build.ts';
import { requireBinary } from '../support/ipmi-sim.ts';
import { repoRoot } from '../../controller/lab/index.ts';

const run = promisify(execFile);
const dirs: string[] = [];
const cacheDir = path.join(repoRoot, 'ramdisk/cache');

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function build(): Promise<{ dir: string; manifest: Awaited<ReturnType<typeof buildRamdisk>> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bm-ramdisk-'));
  dirs.push(dir);
  const manifest = await buildRamdisk({
    outDir: dir,
    cacheDir,
    kernelPackage: 'linux-image-amd64',
    sourceDateEpoch: 0,
    log: () => undefined,
  });
  return { dir, manifest };
}

describe('npm run build:ramdisk', () => {
  it('builds the same initrd bytes twice from the same inputs, under 60 MiB, holding init, busybox, node, the agent and the modules', {
    timeout: 600_000,
  }, async () => {
    requireBinary('cpio', 'cpio');
    const first = await build();
    const second = await build();
    const bytes = await readFile(path.join(first.dir, 'initrd'));
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(first.manifest.initrd.sha256);
    expect(second.manifest.initrd.sha256).toBe(first.manifest.initrd.sha256);
    expect(second.manifest.kernel.sha256).toBe(first.manifest.kernel.sha256);
    expect(first.manifest.initrd.bytes).toBeLessThanOrEqual(60 * 1024 * 1024);

    const cpio = path.join(first.dir, 'initrd.cpio');
    await writeFile(cpio, gunzipSync(bytes));
    const listing = (await run('cpio', ['-itv', '--quiet', '-F', cpio], { maxBuffer: 16 * 1024 * 1024 })).stdout;
    const names = listing.split('\n').map((l) => l.split(/\s+/).at(-1));
    for (const needed of [
      'init',
      'bin/busybox',
      'usr/bin/node',
      'usr/lib/bm-agent/agent.js',
      'etc/bm/modules',
      'etc/bm/udhcpc.script',
      'lib64/ld-linux-x86-64.so.2',
    ])
      expect(names).toContain(needed);
    expect(listing).toMatch(/^crw------- .* 5,\s*1 .* dev\/console$/m);
    expect(listing).toMatch(/^lrwxrwxrwx .* bin\/sh -> busybox$/m);
    // Every file dated SOURCE_DATE_EPOCH (0) and owned by root.
    expect(
      listing
        .split('\n')
        .filter((l) => l.trim() !== '')
        .every((l) => /\broot\s+root\b/.test(l) && /\b1970\b/.test(l)),
    ).toBe(true);
    // Every module the init loads is in the archive, after the ones it depends on (virtio first).
    const order = (await run('sh', ['-c', `cd ${first.dir} && cpio -i --quiet --to-stdout etc/bm/modules < ${cpio}`])).stdout
      .trim()
      .split('\n');
    for (const module of order) expect(names).toContain(`lib/modules/${first.manifest.kernelVersion}/${module}`);
    expect(order.findIndex((m) => m.endsWith('/virtio.ko'))).toBeLessThan(order.findIndex((m) => m.endsWith('/virtio_net.ko')));
    for (const wanted of ['virtio_net', 'virtio_blk', 'e1000e', 'ahci', 'nvme', 'sd_mod', 'igb', 'ixgbe'])
      expect(first.manifest.modules).toContain(wanted);
  });
});
