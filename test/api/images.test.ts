/**
 * Image uploads through the real bmctl to a real controller: qcow2 images made
 * by the real qemu-img, whose raw digest must equal that of
 * `qemu-img convert -O raw`; unsupported images refused at upload time.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { type CreateImageRequestSchema, ImageService } from '../../proto/gen/bm/v1/image_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { runBmctl, startControllerProcess, type ControllerProcess } from '../../controller/lab/index.ts';

const run = promisify(execFile);
let ctl: ControllerProcess;
let conn: RpcConnection;
let dir: string;
let env: Record<string, string>;

async function sha256File(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/** The 4 MiB block digest by coreutils alone (the recipe in proto/digest/block-sha256.ts). */
async function blockDigestBySplit(file: string): Promise<string> {
  const { stdout } = await run('sh', [
    '-c',
    `split -b 4M --filter='sha256sum | cut -c1-64 | tr a-f A-F | basenc --base16 -d' '${file}' | sha256sum`,
  ]);
  return stdout.slice(0, 64);
}

async function qemuImg(...args: string[]): Promise<void> {
  try {
    await run('qemu-img', args);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new Error('qemu-img is missing: apt-get install qemu-utils (scripts/setup.sh does)');
    throw err;
  }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-img-'));
  ctl = await startControllerProcess();
  conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
  env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
  // 8 MiB raw with data at both ends and a hole between.
  const raw = path.join(dir, 'disk.raw');
  const fh = await open(raw, 'w');
  await fh.truncate(8 * 1024 * 1024);
  await fh.write(randomBytes(300_000), 0, 300_000, 0);
  await fh.write(randomBytes(70_000), 0, 70_000, 6 * 1024 * 1024 + 123);
  await fh.close();
  await qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', 'compat=1.1,cluster_size=65536', raw, path.join(dir, 'disk.qcow2'));
  await qemuImg('convert', '-f', 'qcow2', '-O', 'raw', path.join(dir, 'disk.qcow2'), path.join(dir, 'expected.raw'));
  await qemuImg('create', '-f', 'qcow2', '-b', path.join(dir, 'disk.qcow2'), '-F', 'qcow2', path.join(dir, 'overlay.qcow2'));
  await writeFile(path.join(dir, 'vmlinuz'), randomBytes(4096));
  await writeFile(path.join(dir, 'initrd'), randomBytes(8192));
});

afterAll(async () => {
  conn?.close();
  await ctl?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Tests that run bmctl several times: each run starts Node on the TypeScript sources, seconds apiece when CI's other files load both cores (one took over 30 s there). */
const BMCTL_HEAVY_MS = 120_000;

describe('image store', () => {
  it('uploads a compressed qcow2 made by qemu-img and records its raw digest', async () => {
    const r = await runBmctl(
      ['--json', 'image', 'create', '--name', 'ubuntu-test', '--disk-format', 'qcow2', path.join(dir, 'disk.qcow2')],
      env,
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const image = JSON.parse(r.stdout) as {
      sha256: string;
      rawSha256: string;
      rawBlockSha256: string;
      virtualSize: string;
      status: string;
      size: string;
    };
    expect(image.status).toBe('active');
    expect(image.sha256).toBe(await sha256File(path.join(dir, 'disk.qcow2')));
    expect(image.rawSha256).toBe(await sha256File(path.join(dir, 'expected.raw')));
    // The 4 MiB block digest deploys check, against the shell recipe of proto/digest/block-sha256.ts.
    expect(image.rawBlockSha256).toBe(await blockDigestBySplit(path.join(dir, 'expected.raw')));
    expect(Number(image.virtualSize)).toBe(8 * 1024 * 1024);
  });

  it('prints the final sha256 in the plain output, and stores identical content once', async () => {
    const r = await runBmctl(['image', 'create', '--name', 'ubuntu-copy', '--disk-format', 'qcow2', path.join(dir, 'disk.qcow2')], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`sha256: ${await sha256File(path.join(dir, 'disk.qcow2'))}`));
    const blobs = await readdir(path.join(ctl.dir, 'images'), { recursive: true });
    expect(blobs.filter((f) => /[0-9a-f]{64}$/.test(f))).toHaveLength(1);
  });

  it(
    'uploads a kernel and ramdisk and links an image to them, and refuses deleting them while used',
    async () => {
      expect(
        (await runBmctl(['image', 'create', '--name', 'deploy-kernel', '--disk-format', 'aki', path.join(dir, 'vmlinuz')], env)).code,
      ).toBe(0);
      expect(
        (await runBmctl(['image', 'create', '--name', 'deploy-ramdisk', '--disk-format', 'ari', path.join(dir, 'initrd')], env)).code,
      ).toBe(0);
      const linked = await runBmctl(
        [
          '--json',
          'image',
          'create',
          '--name',
          'linked',
          '--disk-format',
          'raw',
          '--kernel',
          'deploy-kernel',
          '--ramdisk',
          'deploy-ramdisk',
          path.join(dir, 'expected.raw'),
        ],
        env,
      );
      expect(linked.code).toBe(0);
      const linkedImage = JSON.parse(linked.stdout) as { properties: Record<string, string>; rawBlockSha256: string };
      expect(linkedImage.properties).toEqual({ kernel_id: 'deploy-kernel', ramdisk_id: 'deploy-ramdisk' });
      expect(linkedImage.rawBlockSha256).toBe(await blockDigestBySplit(path.join(dir, 'expected.raw')));
      const refused = await runBmctl(['image', 'delete', 'deploy-kernel'], env);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/used by image\(s\) linked.*FAILED_PRECONDITION/);
      expect((await runBmctl(['image', 'delete', 'linked'], env)).code).toBe(0);
      expect((await runBmctl(['image', 'delete', 'deploy-kernel'], env)).code).toBe(0);
    },
    BMCTL_HEAVY_MS,
  );

  it('refuses a qcow2 with a backing file at upload time, keeping nothing', async () => {
    const before = (await conn.client(ImageService).listImages({})).images.length;
    const r = await runBmctl(['image', 'create', '--name', 'overlay', '--disk-format', 'qcow2', path.join(dir, 'overlay.qcow2')], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/backing/i);
    expect((await conn.client(ImageService).listImages({})).images.length).toBe(before);
    await expect(conn.client(ImageService).getImage({ id: 'overlay' })).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it(
    'refuses a raw upload of a qcow2 file, a wrong expected digest, a taken name and a bad format',
    async () => {
      const asRaw = await runBmctl(
        ['image', 'create', '--name', 'wrong-format', '--disk-format', 'raw', path.join(dir, 'disk.qcow2')],
        env,
      );
      expect(asRaw.stderr).toMatch(/is a qcow2 image/);
      const digest = await runBmctl(
        ['image', 'create', '--name', 'bad-digest', '--disk-format', 'raw', '--sha256', 'a'.repeat(64), path.join(dir, 'expected.raw')],
        env,
      );
      expect(digest.code).toBe(1);
      expect(digest.stderr).toMatch(/sha256/);
      const taken = await runBmctl(
        ['image', 'create', '--name', 'ubuntu-test', '--disk-format', 'raw', path.join(dir, 'expected.raw')],
        env,
      );
      expect(taken.stderr).toMatch(/already exists.*ALREADY_EXISTS/);
      const fmt = await runBmctl(['image', 'create', '--name', 'x', '--disk-format', 'vmdk', path.join(dir, 'expected.raw')], env);
      expect(fmt.stderr).toMatch(/disk_format: must be one of raw, qcow2, aki, ari/);
      const names = (await conn.client(ImageService).listImages({})).images.map((i) => i.name);
      expect(names).not.toContain('wrong-format');
      expect(names).not.toContain('bad-digest');
    },
    BMCTL_HEAVY_MS,
  );

  it('keeps nothing of an upload the client cancels half-way (no image, no blob)', async () => {
    // grpc-js's client sends END_STREAM before RST_STREAM on a cancel: the server must not take the
    // end of a cancelled request stream for a finished upload.
    const sent = createHash('sha256');
    const abort = new AbortController();
    let chunks = 0;
    async function* upload(): AsyncIterable<MessageInitShape<typeof CreateImageRequestSchema>> {
      yield { part: { case: 'meta', value: { name: 'cancelled-upload', diskFormat: 'raw' } } };
      for (; chunks < 16; chunks++) {
        const chunk = randomBytes(64 * 1024);
        sent.update(chunk);
        yield { part: { case: 'chunk', value: chunk } };
      }
      await new Promise((resolve) => abort.signal.addEventListener('abort', resolve, { once: true }));
    }
    const uploading = conn
      .client(ImageService)
      .createImage(upload(), { signal: abort.signal })
      .catch((e: unknown) => e);
    await expect.poll(() => chunks, { timeout: 5000 }).toBe(16);
    // Let the chunks reach the server before the cancel.
    await new Promise((r) => setTimeout(r, 300));
    abort.abort();
    expect(await uploading).toMatchObject({ code: status.CANCELLED });
    const partial = sent.digest('hex');
    // Long enough for a wrongly finished upload to be hashed, inspected and recorded.
    await new Promise((r) => setTimeout(r, 1500));
    const names = (await conn.client(ImageService).listImages({})).images.map((i) => i.name);
    expect(names).not.toContain('cancelled-upload');
    const blobs = await readdir(path.join(ctl.dir, 'images'), { recursive: true });
    expect(blobs.filter((f) => f.endsWith(partial))).toEqual([]);
  });

  it('refuses an upload that does not start with meta', async () => {
    const err = await conn
      .client(ImageService)
      .createImage([{ part: { case: 'chunk', value: new Uint8Array(10) } }])
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: status.INVALID_ARGUMENT });
  });
});
