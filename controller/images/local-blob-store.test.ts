import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { BlobNotFoundError } from './blob-store.ts';
import { BlobTooLargeError, LocalBlobStore } from './local-blob-store.ts';

async function* chunks(data: Uint8Array, size = 100_000): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

async function listAll(store: LocalBlobStore): Promise<string[]> {
  const names: string[] = [];
  for await (const name of store.list()) names.push(name);
  return names;
}

const sha = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

describe('local blob store', () => {
  let root: string;
  let store: LocalBlobStore;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'bm-blobs-'));
    store = new LocalBlobStore(root);
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('stores a stream under its sha256 and reads it back whole and by range', async () => {
    const data = randomBytes(1_234_567);
    const info = await store.put(chunks(data));
    expect(info).toEqual({ sha256: sha(data), size: data.length });
    expect((await stat(join(root, 'sha256', info.sha256.slice(0, 2), info.sha256))).size).toBe(data.length);
    expect(await store.has(info.sha256)).toBe(true);
    expect(await store.stat(info.sha256)).toEqual(info);
    expect((await readAll(await store.openRead(info.sha256))).equals(data)).toBe(true);
    expect((await readAll(await store.openRead(info.sha256, { offset: 1000, length: 5000 }))).equals(data.subarray(1000, 6000))).toBe(true);
    expect((await readAll(await store.openRead(info.sha256, { offset: data.length - 7 }))).equals(data.subarray(data.length - 7))).toBe(
      true,
    );
    expect((await readAll(await store.openRead(info.sha256, { offset: data.length }))).length).toBe(0);
    const random = await store.openRandomAccess(info.sha256);
    try {
      expect(Buffer.from(await random.read(500_000, 10)).equals(data.subarray(500_000, 500_010))).toBe(true);
    } finally {
      await random.close();
    }
  });

  it('refuses ranges outside the blob', async () => {
    const { sha256 } = await store.put(chunks(randomBytes(100)));
    await expect(store.openRead(sha256, { offset: 101 })).rejects.toThrow(/range.offset/);
    await expect(store.openRead(sha256, { offset: 50, length: 51 })).rejects.toThrow(/range.length/);
  });

  it('deletes, and reports missing blobs as not found', async () => {
    const { sha256 } = await store.put(chunks(randomBytes(100)));
    expect(await store.delete(sha256)).toBe(true);
    expect(await store.delete(sha256)).toBe(false);
    expect(await store.has(sha256)).toBe(false);
    expect(await store.stat(sha256)).toBeUndefined();
    await expect(store.openRead(sha256)).rejects.toBeInstanceOf(BlobNotFoundError);
    await expect(store.openRandomAccess(sha256)).rejects.toBeInstanceOf(BlobNotFoundError);
  });

  it('keeps one blob for the same content stored twice, including concurrently', async () => {
    const data = randomBytes(300_000);
    const results = await Promise.all([store.put(chunks(data, 1000)), store.put(chunks(data, 7000)), store.put(chunks(data))]);
    const again = await store.put(chunks(data));
    for (const info of [...results, again]) expect(info.sha256).toBe(sha(data));
    expect(await listAll(store)).toEqual([sha(data)]);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
    expect((await readAll(await store.openRead(sha(data)))).equals(data)).toBe(true);
  });

  it('stores different contents put concurrently side by side', async () => {
    const blobs = Array.from({ length: 8 }, () => randomBytes(50_000));
    const infos = await Promise.all(blobs.map((b) => store.put(chunks(b, 4096))));
    expect(infos.map((i) => i.sha256).sort()).toEqual(blobs.map(sha).sort());
    expect((await listAll(store)).length).toBe(8);
  });

  it('leaves nothing behind when the upload stream fails midway', async () => {
    async function* broken(): AsyncGenerator<Uint8Array> {
      yield randomBytes(10_000);
      throw new Error('client went away');
    }
    await expect(store.put(broken())).rejects.toThrow('client went away');
    expect(await listAll(store)).toEqual([]);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
  });

  it('refuses and discards an upload over the size limit or with the wrong digest', async () => {
    const data = randomBytes(10_000);
    await expect(store.put(chunks(data, 1000), { maxBytes: 9_999 })).rejects.toBeInstanceOf(BlobTooLargeError);
    await expect(store.put(chunks(data), { expectedSha256: 'ab'.repeat(32) })).rejects.toThrow(/content hashes to/);
    expect(await listAll(store)).toEqual([]);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
    expect((await store.put(chunks(data), { expectedSha256: sha(data), maxBytes: 10_000 })).size).toBe(10_000);
  });

  it('reports progress as bytes are written', async () => {
    const seen: number[] = [];
    await store.put(chunks(randomBytes(250_000)), { onProgress: (n) => seen.push(n) });
    expect(seen).toEqual([100_000, 200_000, 250_000]);
  });

  it('accepts only 64 lowercase hex digits as a blob name', async () => {
    for (const bad of ['../../etc/passwd', 'AB'.repeat(32), 'ab'.repeat(31), `${'ab'.repeat(32)}/x`, '']) {
      await expect(store.stat(bad)).rejects.toBeInstanceOf(ValidationError);
      await expect(store.openRead(bad)).rejects.toBeInstanceOf(ValidationError);
      await expect(store.delete(bad)).rejects.toBeInstanceOf(ValidationError);
    }
  });

  it('sweeps stale temp files left by a crash, sparing fresh ones', async () => {
    async function* hang(): AsyncGenerator<Uint8Array> {
      yield randomBytes(10);
      await new Promise(() => {}); // never finishes: a live upload
    }
    void store.put(hang());
    await new Promise((resolve) => setTimeout(resolve, 50));
    const [live] = await readdir(join(root, 'tmp'));
    expect(live).toMatch(/\.part$/);
    expect(await store.sweepTemp(60_000)).toBe(0);
    const old = new Date(Date.now() - 2 * 3600_000);
    await utimes(join(root, 'tmp', live ?? ''), old, old);
    expect(await store.sweepTemp(3600_000)).toBe(1);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
  });
});
