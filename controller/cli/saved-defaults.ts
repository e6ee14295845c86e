/**
 * The API address and token bmctl falls back to when neither --url/--token
 * nor BM_URL/BM_TOKEN say anything: `bmctl lab up` saves its lab's there, so
 * `bmctl instance list` works next in any shell. One small JSON file,
 * `$XDG_CONFIG_HOME/bmctl/env.json` (default `~/.config/bmctl/env.json`),
 * mode 0600 since it holds a token.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface SavedDefaults {
  readonly url: string;
  readonly token: string;
  /** The CA file of a TLS controller (a lab's). */
  readonly ca?: string;
}

type Env = Readonly<Record<string, string | undefined>>;

export function savedDefaultsPath(env: Env): string {
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(base, 'bmctl/env.json');
}

/** The saved defaults, or null when there are none (or the file is not ours to trust: unreadable, malformed). */
export function readSavedDefaults(env: Env): SavedDefaults | null {
  try {
    const value = JSON.parse(readFileSync(savedDefaultsPath(env), 'utf8')) as Partial<SavedDefaults>;
    if (typeof value.url !== 'string' || typeof value.token !== 'string') return null;
    return typeof value.ca === 'string' ? { url: value.url, token: value.token, ca: value.ca } : { url: value.url, token: value.token };
  } catch {
    return null;
  }
}

export function saveDefaults(env: Env, defaults: SavedDefaults): string {
  const file = savedDefaultsPath(env);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, JSON.stringify(defaults) + '\n', { mode: 0o600 });
  return file;
}

export function removeSavedDefaults(env: Env): void {
  rmSync(savedDefaultsPath(env), { force: true });
}
