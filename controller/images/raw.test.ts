import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { collect } from './collect.testutil.ts';
import { rawContentSha256 } from './digest.ts';
import { extentEnd } from './extents.ts';
import { materializeToFile, materializeToHandle } from './materialize.ts';
import { FileHandleReader } from './random-access.ts';
import { RawImage } from './raw.ts';

const MiB = 1024 * 1024;

describe('raw image source', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bm-raw-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** 5 MiB + 1000 bytes: data at [0, 4 KiB), [1 MiB + 8 KiB, 3 MiB + 100) and the last 1000 bytes; holes elsewhere. */
  async function fileWithHoles(): Promise<string> {
    const path = join(dir, 'disk.raw');
    const handle = await open(path, 'w');
    await handle.truncate(5 * MiB + 1000);
    await handle.write(randomBytes(4096), 0, 4096, 0);
    await handle.write(randomBytes(2 * MiB - 8192 + 100), 0, 2 * MiB - 8192 + 100, MiB + 8192);
    await handle.write(randomBytes(1000), 0, 1000, 5 * MiB);
    await handle.close();
    return path;
  }

  it('yields zero runs as merged zero extents at 4 KiB granularity', async () => {
    const path = await fileWithHoles();
    const reader = await FileHandleReader.open(path);
    try {
      const image = new RawImage(reader);
      const { bytes, extents } = await collect(image, 0, MiB);
      expect(Buffer.from(bytes).equals(await readFile(path))).toBe(true);
      const zeros = extents.filter((e) => e.kind === 'zero').map((e) => [e.offset, extentEnd(e)]);
      // The data run ends at 3 MiB + 100, inside a 4 KiB block that is therefore data.
      expect(zeros).toEqual([
        [4096, MiB + 8192],
        [3 * MiB + 4096, 5 * MiB],
      ]);
    } finally {
      await reader.close();
    }
  });

  it('digests to the sha256 of the file', async () => {
    const path = await fileWithHoles();
    const reader = await FileHandleReader.open(path);
    try {
      const digest = await rawContentSha256(new RawImage(reader, { chunkSize: 256 * 1024 }));
      expect(digest.sha256).toBe(
        createHash('sha256')
          .update(await readFile(path))
          .digest('hex'),
      );
      expect(digest.size).toBe(5 * MiB + 1000);
    } finally {
      await reader.close();
    }
  });

  it('resumes from any offset with exactly the tail', async () => {
    const path = await fileWithHoles();
    const whole = await readFile(path);
    const reader = await FileHandleReader.open(path);
    try {
      const image = new RawImage(reader);
      for (const from of [1, 4095, MiB + 8191, 3 * MiB + 50, 5 * MiB + 999, 5 * MiB + 1000]) {
        const { bytes } = await collect(image, from);
        expect(Buffer.from(bytes).equals(whole.subarray(from)), `from ${from}`).toBe(true);
      }
    } finally {
      await reader.close();
    }
  });

  it('materialises to a sparse file identical to the source', async () => {
    const path = await fileWithHoles();
    const out = join(dir, 'copy.raw');
    const reader = await FileHandleReader.open(path);
    try {
      const result = await materializeToFile(new RawImage(reader), out);
      expect(result.dataBytes + result.zeroBytes).toBe(5 * MiB + 1000);
      expect((await readFile(out)).equals(await readFile(path))).toBe(true);
    } finally {
      await reader.close();
    }
  });

  it('writes holes as zeros onto a target that does not read as zeros, from a resume offset', async () => {
    const path = await fileWithHoles();
    const out = join(dir, 'dirty.raw');
    const size = 5 * MiB + 1000;
    const handle = await open(out, 'w+');
    const reader = await FileHandleReader.open(path);
    try {
      await handle.write(Buffer.alloc(size, 0xff), 0, size, 0);
      const from = MiB + 3;
      const result = await materializeToHandle(new RawImage(reader), handle, { targetReadsAsZero: false, fromOffset: from });
      expect(result.dataBytes + result.zeroBytes).toBe(size - from);
      const written = await readFile(out);
      expect(written.subarray(from).equals((await readFile(path)).subarray(from))).toBe(true);
      expect(written.subarray(0, from).every((b) => b === 0xff)).toBe(true);
    } finally {
      await reader.close();
      await handle.close();
    }
  });

  it('refuses chunk sizes the zero block does not divide', () => {
    const reader = { size: 0, read: () => Promise.resolve(new Uint8Array()) };
    expect(() => new RawImage(reader, { chunkSize: 1000 })).toThrow(RangeError);
    expect(() => new RawImage(reader, { chunkSize: 2 ** 30 })).toThrow(RangeError);
  });
});
