/**
 * Direct I/O in the image writer (agent/disk/direct-io.ts): aligned frames
 * from aligned memory go past the page cache, everything else through it,
 * and the bytes on the target are the image's either way.
 */
import { randomBytes } from 'node:crypto';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AlignedSlots, DIRECT_ALIGN, isDirectAligned } from '../../agent/disk/direct-io.ts';
import { openImageWriter, type ImageFrame } from '../../agent/disk/writer.ts';
import { sha256, takesDirectIo, withTempDir } from './disk-helpers.ts';

const MIB = 1024 * 1024;

/** The image as 1 MiB frames, each copied into a slot of `slots` when one is free (as the receive decoder places them). */
function alignedFrames(image: Uint8Array, slots: AlignedSlots): ImageFrame[] {
  const frames: ImageFrame[] = [];
  for (let offset = 0; offset < image.length; offset += MIB) {
    const piece = image.subarray(offset, Math.min(image.length, offset + MIB));
    const slot = slots.take();
    if (slot) slot.set(piece);
    const data = slot ? slot.subarray(0, piece.length) : piece;
    frames.push({ offset, data, onDone: () => slots.give(data) });
  }
  return frames;
}

async function write(disk: string, image: Uint8Array, frames: readonly ImageFrame[], directIo?: boolean) {
  await writeFile(disk, '');
  await truncate(disk, 8 * MIB);
  const writer = await openImageWriter(disk, { imageSize: image.length, knownZeroFrom: 0, ...(directIo === false ? { directIo } : {}) });
  for (const frame of frames) await writer.write(frame);
  const result = await writer.finish();
  expect(result.sha256).toBe(sha256(image));
  expect(sha256((await readFile(disk)).subarray(0, image.length))).toBe(sha256(image));
  return result;
}

describe('aligned slots', () => {
  it('hand out aligned, distinct slots until all are lent, and take back only their own', () => {
    const slots = new AlignedSlots(MIB + 1, 3);
    expect(slots.slotBytes).toBe(MIB + DIRECT_ALIGN);
    const taken = [slots.take(), slots.take(), slots.take()];
    expect(slots.take()).toBeUndefined();
    for (const slot of taken) expect(isDirectAligned(slot!.subarray(0, MIB), 0)).toBe(true);
    expect(new Set(taken.map((s) => s!.byteOffset)).size).toBe(3);
    // Alignment of the view, its length and the file offset all count.
    expect(isDirectAligned(taken[0]!.subarray(512, 512 + MIB), 0)).toBe(false);
    expect(isDirectAligned(taken[0]!.subarray(0, MIB - 1), 0)).toBe(false);
    expect(isDirectAligned(taken[0]!.subarray(0, MIB), 512)).toBe(false);
    expect(isDirectAligned(new Uint8Array(MIB), 0)).toBe(false);
    slots.give(new Uint8Array(MIB));
    expect(slots.lent).toBe(3);
    slots.give(taken[1]!.subarray(100, 200));
    slots.give(taken[1]!);
    expect(slots.lent).toBe(2);
    expect(slots.take()?.byteOffset).toBe(taken[1]!.byteOffset);
  });
});

describe('image writer with direct I/O', () => {
  it('writes aligned frames past the page cache and the rest (the unaligned tail, frames with no slot) through it', async () => {
    await withTempDir(async (dir) => {
      const image = randomBytes(5 * MIB + 1000);
      // Three slots for six frames: three go direct, the two without a slot and the short tail do not.
      const result = await write(join(dir, 'disk.img'), image, alignedFrames(image, new AlignedSlots(MIB, 3)));
      expect(result.bytesWritten).toBe(image.length);
      // Where the temp directory's file system refuses O_DIRECT, every frame goes through the cache.
      expect(result.directBytes).toBe((await takesDirectIo(dir)) ? 3 * MIB : 0);
    });
  });

  it('writes every frame through the page cache when direct I/O is off', async () => {
    await withTempDir(async (dir) => {
      const image = randomBytes(3 * MIB);
      const result = await write(join(dir, 'disk.img'), image, alignedFrames(image, new AlignedSlots(MIB, 4)), false);
      expect(result.directBytes).toBe(0);
    });
  });
});
