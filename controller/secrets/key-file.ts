/**
 * Where the secret key comes from: config (base64) or a key file that the
 * first controller start creates with 0600 permissions. Every controller of a
 * cluster must use the same key; copy the file, do not let each make its own.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BmError } from '../errors.ts';

export class SecretKeyError extends BmError {
  constructor(message: string, context: Record<string, string> = {}) {
    super('failed-precondition', message, context);
  }
}

export interface KeySource {
  readonly key: string;
  readonly keyFile: string;
}

export async function loadSecretKey(source: KeySource): Promise<{ key: Buffer; created: boolean }> {
  if (source.key !== '') {
    const key = Buffer.from(source.key, 'base64');
    if (key.length !== 32) throw new SecretKeyError(`secrets.key must be base64 of 32 bytes, it decodes to ${key.length} bytes`);
    return { key, created: false };
  }
  const file = source.keyFile;
  try {
    const info = await stat(file);
    if ((info.mode & 0o077) !== 0) {
      throw new SecretKeyError(
        `secret key file ${file} is readable by group or others (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 ${file}`,
        { file },
      );
    }
    const key = Buffer.from((await readFile(file, 'utf8')).trim(), 'base64');
    if (key.length !== 32) throw new SecretKeyError(`secret key file ${file} must hold base64 of 32 bytes`, { file });
    return { key, created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  try {
    // 'wx' fails if another controller on this host created it meanwhile.
    await writeFile(file, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    return { key, created: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadSecretKey(source);
    throw err;
  }
}
