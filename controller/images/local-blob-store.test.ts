import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { blobStoreContract, chunks } from './blob-store-contract.testutil.ts';
import { LocalBlobStore } from './local-blob-store.ts';

async function listAll(store: LocalBlobStore): Promise<string[]> {
  const names: string[] = [];
  for await (const name of store.list()) names.push(name);
  return names;
}

async function tempFiles(root: string): Promise<string[]> {
  return readdir(join(root, 'tmp')).catch(() => []);
}

blobStoreContract('local', async () => {
  const root = await mkdtemp(join(tmpdir(), 'bm-blobs-'));
  const store = new LocalBlobStore(root);
  return {
    store,
    list: () => listAll(store),
    leftovers: () => tempFiles(root),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

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

  it('keeps a blob at sha256/<first two digits>/<digest>', async () => {
    const data = randomBytes(12_345);
    const info = await store.put(chunks(data));
    expect((await stat(join(root, 'sha256', info.sha256.slice(0, 2), info.sha256))).size).toBe(data.length);
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
