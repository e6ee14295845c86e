/** Helpers for the agent disk tests: temp dirs, images with holes, and their frames. */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDirect } from '../../agent/disk/direct-io.ts';
import type { ImageFrame } from '../../agent/disk/writer.ts';

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'bm-agent-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** An image of `size` bytes: random data with zero stretches of the given [offset, length) ranges. */
export function imageWithHoles(size: number, holes: readonly (readonly [number, number])[]): Buffer {
  const image = randomBytes(size);
  for (const [offset, length] of holes) image.fill(0, offset, Math.min(size, offset + length));
  return image;
}

/**
 * The image as frames of at most `frameBytes`: runs that are all zeros
 * become zero frames, the rest data frames (as the controller's extent
 * source produces them).
 */
export function framesOf(image: Uint8Array, frameBytes: number, from = 0): ImageFrame[] {
  const frames: ImageFrame[] = [];
  for (let offset = from; offset < image.length; offset += frameBytes) {
    const piece = image.subarray(offset, Math.min(image.length, offset + frameBytes));
    frames.push(piece.every((byte) => byte === 0) ? { offset, zeroLength: piece.length } : { offset, data: piece });
  }
  return frames;
}

/** Whether files in `dir` open with O_DIRECT (ext4 and tmpfs since Linux 6.6 do; the writer falls back where not). */
export async function takesDirectIo(dir: string): Promise<boolean> {
  const probe = join(dir, '.direct-probe');
  await writeFile(probe, '');
  const handle = await openDirect(probe);
  await handle?.close();
  await rm(probe, { force: true });
  return handle !== null;
}
