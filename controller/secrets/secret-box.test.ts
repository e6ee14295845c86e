import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, chmod, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SecretBox, SecretDecryptError } from './secret-box.ts';
import { loadSecretKey, SecretKeyError } from './key-file.ts';

describe('SecretBox (AES-256-GCM)', () => {
  const box = new SecretBox(randomBytes(32));

  it('round-trips a password and never stores it in the clear', () => {
    const sealed = box.encrypt('hunter2-ipmi', 'node-a');
    expect(sealed.includes(Buffer.from('hunter2-ipmi'))).toBe(false);
    expect(box.decrypt(sealed, 'node-a')).toBe('hunter2-ipmi');
  });

  it('uses a fresh nonce each time', () => {
    expect(box.encrypt('same', 'n').equals(box.encrypt('same', 'n'))).toBe(false);
  });

  it('refuses a ciphertext moved to another node', () => {
    const sealed = box.encrypt('pw', 'node-a');
    expect(() => box.decrypt(sealed, 'node-b')).toThrow(SecretDecryptError);
  });

  it('refuses a tampered ciphertext', () => {
    const sealed = box.encrypt('password', 'node-a');
    sealed[sealed.length - 1]! ^= 1;
    expect(() => box.decrypt(sealed, 'node-a')).toThrow(/authentication failed/);
  });

  it('tells a different key from corruption', () => {
    const other = new SecretBox(randomBytes(32));
    expect(() => other.decrypt(box.encrypt('pw', 'n'), 'n')).toThrow(/different key/);
  });

  it('refuses keys that are not 32 bytes', () => {
    expect(() => new SecretBox(randomBytes(16))).toThrow(/32 bytes/);
  });
});

describe('loadSecretKey', () => {
  let dir = '';
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('creates a 0600 key file on first start and reads the same key after', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'bm-key-'));
    const file = path.join(dir, 'sub', 'secret.key');
    const first = await loadSecretKey({ key: '', keyFile: file });
    expect(first.created).toBe(true);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const second = await loadSecretKey({ key: '', keyFile: file });
    expect(second.created).toBe(false);
    expect(second.key.equals(first.key)).toBe(true);
    expect(Buffer.from((await readFile(file, 'utf8')).trim(), 'base64').length).toBe(32);
  });

  it('refuses a key file others can read', async () => {
    const file = path.join(dir, 'open.key');
    await writeFile(file, randomBytes(32).toString('base64'));
    await chmod(file, 0o644);
    await expect(loadSecretKey({ key: '', keyFile: file })).rejects.toThrow(SecretKeyError);
    await expect(loadSecretKey({ key: '', keyFile: file })).rejects.toThrow(/chmod 600/);
  });

  it('takes a base64 key from config and checks its length', async () => {
    const key = randomBytes(32);
    expect((await loadSecretKey({ key: key.toString('base64'), keyFile: '/nonexistent' })).key.equals(key)).toBe(true);
    await expect(loadSecretKey({ key: randomBytes(8).toString('base64'), keyFile: '/x' })).rejects.toThrow(/32 bytes/);
  });
});
