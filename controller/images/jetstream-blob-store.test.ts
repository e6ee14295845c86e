import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { natsUrl, uniqueNatsPrefix } from '../lab/controller-process.ts';
import { ValidationError } from '../errors.ts';
import { BlobNotFoundError, BlobStoreUnavailableError } from './blob-store.ts';
import { blobStoreContract, chunks, readAll, sha } from './blob-store-contract.testutil.ts';
import { bucketName, JetStreamBlobStore } from './jetstream-blob-store.ts';

let nc: NatsConnection;
beforeAll(async () => {
  nc = await connect({ servers: natsUrl });
});
afterAll(async () => {
  await nc.close();
});

async function listAll(store: JetStreamBlobStore): Promise<string[]> {
  const names: string[] = [];
  for await (const name of store.list()) names.push(name);
  return names;
}

/** A bucket and cache directory of its own, removed by cleanup(). */
async function freshStore(chunkBytes?: number): Promise<{ store: JetStreamBlobStore; bucket: string; cleanup(): Promise<void> }> {
  const bucket = bucketName(uniqueNatsPrefix(), 'images');
  const cacheDir = await mkdtemp(join(tmpdir(), 'bm-blob-cache-'));
  const store = await JetStreamBlobStore.open(nc, { bucket, replicas: 1, cacheDir, ...(chunkBytes ? { chunkBytes } : {}) });
  return {
    store,
    bucket,
    async cleanup() {
      await store.destroy().catch(() => undefined);
      await rm(cacheDir, { recursive: true, force: true });
    },
  };
}

// Small chunks so the contract's blobs span many of them (the default is 1 MiB).
blobStoreContract('jetstream', async () => {
  const { store, cleanup } = await freshStore(64 * 1024);
  return {
    store,
    list: () => listAll(store),
    leftovers: async () => [...(await store.cache.tempFiles()), ...(await store.strayChunks())],
    cleanup,
  };
});

describe('jetstream blob store', () => {
  let fresh: Awaited<ReturnType<typeof freshStore>>;
  const others: (() => Promise<void>)[] = [];
  beforeEach(async () => {
    fresh = await freshStore(64 * 1024);
  });
  afterEach(async () => {
    for (const cleanup of others.splice(0)) await cleanup();
    await fresh.cleanup();
  });

  /** A second controller's view: the same bucket, its own cache directory. */
  async function peer(): Promise<JetStreamBlobStore> {
    const cacheDir = await mkdtemp(join(tmpdir(), 'bm-blob-cache-'));
    const store = await JetStreamBlobStore.open(nc, { bucket: fresh.bucket, replicas: 1, cacheDir });
    others.push(() => rm(cacheDir, { recursive: true, force: true }));
    return store;
  }

  it('names the bucket after the cluster prefix, so two clusters on one NATS do not share', async () => {
    expect(bucketName('bm', 'images')).toBe('bm_images');
    expect(bucketName('site1.bm', 'images')).toBe('site1_bm_images');
    expect(() => bucketName('bm', 'im ages')).toThrow(ValidationError);
    const data = randomBytes(1000);
    await fresh.store.put(chunks(data));
    const other = await freshStore();
    try {
      expect(await other.store.has(sha(data))).toBe(false);
    } finally {
      await other.cleanup();
    }
  });

  it('serves a blob stored through one controller to another, fetched once into its cache', async () => {
    const data = randomBytes(700_000);
    const { sha256 } = await fresh.store.put(chunks(data));
    const b = await peer();
    expect(await b.stat(sha256)).toEqual({ sha256, size: data.length });
    const reader = await b.openRandomAccess(sha256);
    try {
      expect(Buffer.from(await reader.read(123_456, 70_000)).equals(data.subarray(123_456, 193_456))).toBe(true);
    } finally {
      await reader.close();
    }
    // Cached and verified: reading again needs the store only to confirm the blob still exists.
    const cached = await readAll(await open(b.cache.path(sha256)).then((h) => h.createReadStream()));
    expect(cached.equals(data)).toBe(true);
    expect((await readAll(await b.openRead(sha256, { offset: 10, length: 20 }))).equals(data.subarray(10, 30))).toBe(true);
    expect(b.cache.refetches).toBe(0);
  });

  it('refetches and verifies a cached copy that was corrupted, and one that went missing', async () => {
    const data = randomBytes(400_000);
    const { sha256 } = await fresh.store.put(chunks(data));
    const b = await peer();
    await readAll(await b.openRead(sha256));
    const cachedPath = b.cache.path(sha256);
    // Flip one byte in place: same size, so only the hash can tell.
    const handle = await open(cachedPath, 'r+');
    const [byte] = await handle.read(Buffer.alloc(1), 0, 1, 200_000).then((r) => r.buffer);
    await handle.write(Buffer.from([(byte ?? 0) ^ 0xff]), 0, 1, 200_000);
    await handle.close();
    expect((await readAll(await b.openRead(sha256))).equals(data)).toBe(true);
    expect(b.cache.refetches).toBe(1);
    // Truncated copy.
    await writeFile(cachedPath, data.subarray(0, 1000));
    const reader = await b.openRandomAccess(sha256);
    try {
      expect(reader.size).toBe(data.length);
      expect(Buffer.from(await reader.read(data.length - 100, 100)).equals(data.subarray(data.length - 100))).toBe(true);
    } finally {
      await reader.close();
    }
    expect(b.cache.refetches).toBe(2);
    await unlink(cachedPath);
    expect((await readAll(await b.openRead(sha256))).equals(data)).toBe(true);
    expect(b.cache.refetches).toBe(3);
  });

  it('hashes a cached copy it has not verified yet (a restarted controller) before using it', async () => {
    const data = randomBytes(300_000);
    const { sha256 } = await fresh.store.put(chunks(data));
    // A store over the uploader's cache directory, as after a restart: the copy is there, unverified.
    const restarted = await JetStreamBlobStore.open(nc, { bucket: fresh.bucket, replicas: 1, cacheDir: fresh.store.cache.root });
    const cachedPath = restarted.cache.path(sha256);
    const garbage = Buffer.from(randomBytes(data.length));
    await writeFile(cachedPath, garbage);
    expect((await readAll(await restarted.openRead(sha256))).equals(data)).toBe(true);
    expect(restarted.cache.refetches).toBe(1);
  });

  it('a delete through one controller is seen by another, whose cached copy goes too', async () => {
    const data = randomBytes(5000);
    const { sha256 } = await fresh.store.put(chunks(data));
    const b = await peer();
    await readAll(await b.openRead(sha256));
    expect(await fresh.store.delete(sha256)).toBe(true);
    await expect(b.openRandomAccess(sha256)).rejects.toBeInstanceOf(BlobNotFoundError);
    await expect(open(b.cache.path(sha256))).rejects.toThrow(/ENOENT/);
  });

  it('two controllers storing the same image at once keep one object and no stray chunks', async () => {
    const data = randomBytes(1_000_000);
    const b = await peer();
    const [x, y] = await Promise.all([fresh.store.put(chunks(data, 50_000)), b.put(chunks(data, 30_000))]);
    expect(x).toEqual(y);
    expect(await listAll(fresh.store)).toEqual([sha(data)]);
    expect(await fresh.store.strayChunks()).toEqual([]);
    const c = await peer();
    expect((await readAll(await c.openRead(sha(data)))).equals(data)).toBe(true);
  });

  it('keeps serving verified copies while NATS cannot be reached, and says so for the rest', async () => {
    const cached = randomBytes(20_000);
    const other = randomBytes(20_000);
    await fresh.store.put(chunks(cached));
    await fresh.store.put(chunks(other));
    // A controller on a connection of its own, which then loses it.
    const cacheDir = await mkdtemp(join(tmpdir(), 'bm-blob-cache-'));
    others.push(() => rm(cacheDir, { recursive: true, force: true }));
    const cut = await JetStreamBlobStore.connect(natsUrl, { bucket: fresh.bucket, replicas: 1, cacheDir, timeoutMs: 2000 });
    expect((await readAll(await cut.openRead(sha(cached)))).equals(cached)).toBe(true);
    await cut.close();
    expect((await readAll(await cut.openRead(sha(cached), { offset: 100, length: 50 }))).equals(cached.subarray(100, 150))).toBe(true);
    const failure = await cut.openRead(sha(other)).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(BlobStoreUnavailableError);
    expect((failure as BlobStoreUnavailableError).context).toMatchObject({ bucket: fresh.bucket, sha256: sha(other) });
  });

  it('purges the stale chunks of an upload cut off by a crash, sparing fresh ones and stored objects', async () => {
    const data = randomBytes(200_000);
    await fresh.store.put(chunks(data));
    // What a controller killed mid-upload leaves: chunks under a nuid no meta names.
    const stray = `$O.${fresh.bucket}.C.crashedUploadNuid0000`;
    const js = jetstream(nc);
    for (let i = 0; i < 3; i++) await js.publish(stray, randomBytes(1000));
    expect(await fresh.store.strayChunks()).toEqual([stray]);
    expect(await fresh.store.sweepStrayChunks(3_600_000)).toBe(0);
    expect(await fresh.store.strayChunks()).toEqual([stray]);
    expect(await fresh.store.sweepStrayChunks(3_600_000, Date.now() + 2 * 3_600_000)).toBe(1);
    expect(await fresh.store.strayChunks()).toEqual([]);
    const b = await peer();
    expect((await readAll(await b.openRead(sha(data)))).equals(data)).toBe(true);
  });
});
