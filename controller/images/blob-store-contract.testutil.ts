/**
 * The behaviour every BlobStore promises (blob-store.ts), as one suite that
 * each store's test file runs against a real instance of that store.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { BlobNotFoundError, BlobTooLargeError, type BlobStore } from './blob-store.ts';

export interface ContractSubject {
  readonly store: BlobStore;
  /** Digests of every stored blob, sorted. */
  list(): Promise<string[]>;
  /** What an aborted or refused upload left behind (temp files, stray chunks): must be empty between uploads. */
  leftovers(): Promise<string[]>;
  cleanup(): Promise<void>;
}

export async function* chunks(data: Uint8Array, size = 100_000): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

export async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

export const sha = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

export function blobStoreContract(name: string, open: () => Promise<ContractSubject>): void {
  describe(`${name}: blob store contract`, () => {
    let subject: ContractSubject;
    let store: BlobStore;
    beforeEach(async () => {
      subject = await open();
      store = subject.store;
    });
    afterEach(async () => {
      await subject.cleanup();
    });

    it('stores a stream under its sha256 and reads it back whole and by range', async () => {
      const data = randomBytes(1_234_567);
      const info = await store.put(chunks(data));
      expect(info).toEqual({ sha256: sha(data), size: data.length });
      expect(await store.has(info.sha256)).toBe(true);
      expect(await store.stat(info.sha256)).toEqual(info);
      expect((await readAll(await store.openRead(info.sha256))).equals(data)).toBe(true);
      expect((await readAll(await store.openRead(info.sha256, { offset: 1000, length: 5000 }))).equals(data.subarray(1000, 6000))).toBe(
        true,
      );
      expect((await readAll(await store.openRead(info.sha256, { offset: data.length - 7 }))).equals(data.subarray(data.length - 7))).toBe(
        true,
      );
      expect((await readAll(await store.openRead(info.sha256, { offset: data.length }))).length).toBe(0);
      const random = await store.openRandomAccess(info.sha256);
      try {
        expect(random.size).toBe(data.length);
        expect(Buffer.from(await random.read(500_000, 10)).equals(data.subarray(500_000, 500_010))).toBe(true);
      } finally {
        await random.close();
      }
    });

    it('stores and reads back an empty blob', async () => {
      const info = await store.put(chunks(new Uint8Array(0)));
      expect(info).toEqual({ sha256: sha(new Uint8Array(0)), size: 0 });
      expect((await readAll(await store.openRead(info.sha256))).length).toBe(0);
      const random = await store.openRandomAccess(info.sha256);
      expect(random.size).toBe(0);
      await random.close();
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

    it('stores a deleted blob again', async () => {
      const data = randomBytes(5000);
      const { sha256 } = await store.put(chunks(data));
      await store.delete(sha256);
      await store.put(chunks(data));
      expect((await readAll(await store.openRead(sha256))).equals(data)).toBe(true);
      expect(await subject.list()).toEqual([sha256]);
    });

    it('keeps one blob for the same content stored twice, including concurrently', async () => {
      const data = randomBytes(300_000);
      const results = await Promise.all([store.put(chunks(data, 1000)), store.put(chunks(data, 7000)), store.put(chunks(data))]);
      const again = await store.put(chunks(data));
      for (const info of [...results, again]) expect(info.sha256).toBe(sha(data));
      expect(await subject.list()).toEqual([sha(data)]);
      expect(await subject.leftovers()).toEqual([]);
      expect((await readAll(await store.openRead(sha(data)))).equals(data)).toBe(true);
    });

    it('stores different contents put concurrently side by side', async () => {
      const blobs = Array.from({ length: 8 }, () => randomBytes(50_000));
      const infos = await Promise.all(blobs.map((b) => store.put(chunks(b, 4096))));
      expect(infos.map((i) => i.sha256).sort()).toEqual(blobs.map(sha).sort());
      expect(await subject.list()).toEqual(blobs.map(sha).sort());
    });

    it('leaves nothing behind when the upload stream fails midway', async () => {
      async function* broken(): AsyncGenerator<Uint8Array> {
        yield randomBytes(10_000);
        throw new Error('client went away');
      }
      await expect(store.put(broken())).rejects.toThrow('client went away');
      expect(await subject.list()).toEqual([]);
      expect(await subject.leftovers()).toEqual([]);
    });

    it('refuses and discards an upload over the size limit or with the wrong digest', async () => {
      const data = randomBytes(10_000);
      await expect(store.put(chunks(data, 1000), { maxBytes: 9_999 })).rejects.toBeInstanceOf(BlobTooLargeError);
      await expect(store.put(chunks(data), { expectedSha256: 'ab'.repeat(32) })).rejects.toThrow(/content hashes to/);
      expect(await subject.list()).toEqual([]);
      expect(await subject.leftovers()).toEqual([]);
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
        await expect(store.openRandomAccess(bad)).rejects.toBeInstanceOf(ValidationError);
        await expect(store.delete(bad)).rejects.toBeInstanceOf(ValidationError);
      }
    });
  });
}
