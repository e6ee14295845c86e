/**
 * Confinement of a requested path to a served root, shared by TFTP and HTTP
 * boot. Two checks: the name itself (no absolute path, no `..`, no NUL or
 * backslash tricks) and, after symlinks are resolved, the real path (a link
 * inside the root must not lead out of it: dnsmasq follows such links, we
 * refuse them).
 */
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { NotFoundError } from '../errors.ts';
import { PathOutsideRootError } from './errors.ts';

/** Checks the requested name only; returns the relative path or throws. */
export function checkRelativeName(requested: string, root: string): string {
  if (requested.length === 0) throw new NotFoundError('file', '(empty name)');
  if (requested.includes('\0') || requested.includes('\\')) throw new PathOutsideRootError(requested, root);
  if (requested.startsWith('/')) throw new PathOutsideRootError(requested, root);
  const segments = requested.split('/');
  if (segments.some((s) => s === '..')) throw new PathOutsideRootError(requested, root);
  return segments.filter((s) => s !== '' && s !== '.').join('/');
}

/**
 * Resolves `requested` under `root` to a real path of a regular file inside
 * the root; throws PathOutsideRootError or NotFoundError.
 */
export async function resolveInsideRoot(root: string, requested: string): Promise<string> {
  const relative = checkRelativeName(requested, root);
  if (relative === '') throw new NotFoundError('file', requested);
  const realRoot = await realpath(root);
  let real: string;
  try {
    real = await realpath(path.join(realRoot, relative));
  } catch {
    throw new NotFoundError('file', requested);
  }
  if (real !== realRoot && !real.startsWith(realRoot + path.sep)) throw new PathOutsideRootError(requested, root);
  const info = await stat(real).catch(() => null);
  if (info === null || !info.isFile()) throw new NotFoundError('file', requested);
  return real;
}
