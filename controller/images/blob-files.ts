/**
 * File chores both on-disk blob stores share (the local store and the
 * JetStream store's cache): uploads and fetches land in `<root>/tmp/*.part`
 * before they are renamed into place, so a crash leaves only such files.
 */
import type { FileHandle } from 'node:fs/promises';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

export function isNotFound(err: unknown): boolean {
  return typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT';
}

/** Appends all of `data` (a single write may be short). */
export async function writeFully(handle: FileHandle, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const { bytesWritten } = await handle.write(data, written, data.length - written);
    written += bytesWritten;
  }
}

/**
 * Removes `.part` files in `tmpDir` older than `olderThanMs` (left by a crash);
 * a live transfer's temp file is younger than any sane age. Returns how many went.
 */
export async function sweepStaleParts(tmpDir: string, olderThanMs: number, now: number): Promise<number> {
  let names: string[];
  try {
    names = await readdir(tmpDir);
  } catch (err) {
    if (isNotFound(err)) return 0;
    throw err;
  }
  let removed = 0;
  for (const name of names) {
    if (!name.endsWith('.part')) continue;
    const path = join(tmpDir, name);
    try {
      if (now - (await stat(path)).mtimeMs >= olderThanMs) {
        await rm(path, { force: true });
        removed++;
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  return removed;
}
