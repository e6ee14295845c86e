/**
 * Small readers for /proc and /sys files below a root path. sysfs files can
 * be absent (a driver that does not publish `serial`) or refuse a read
 * (`speed` on a NIC that is down gives EINVAL, `product_serial` is root-only),
 * so the optional readers turn any read failure into `undefined` and leave
 * the decision to the caller.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export function under(root: string, ...parts: string[]): string {
  return join(root, ...parts);
}

/** File text with surrounding whitespace (and sysfs's trailing newline) removed, or undefined. */
export async function readTrimmed(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

export async function readBytes(path: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(path);
  } catch {
    return undefined;
  }
}

/** A decimal integer file; undefined if missing, unreadable or not a number. */
export async function readInteger(path: string): Promise<number | undefined> {
  const text = await readTrimmed(path);
  if (text === undefined || !/^-?\d+$/.test(text)) return undefined;
  return Number(text);
}

/** Entries of a directory, sorted, or [] when it does not exist. */
export async function listDir(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch {
    return [];
  }
}

/** True when the path exists (following symlinks, so a dangling link is false). */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
