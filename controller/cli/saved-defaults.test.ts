import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { apiTarget, DEFAULT_API_URL } from './options.ts';
import { readSavedDefaults, removeSavedDefaults, saveDefaults, savedDefaultsPath } from './saved-defaults.ts';

const dirs: string[] = [];
function home(): Record<string, string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bm-defaults-'));
  dirs.push(dir);
  return { HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'config') };
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('saved defaults', () => {
  it('are written 0600 under XDG_CONFIG_HOME and read back', () => {
    const env = home();
    const file = saveDefaults(env, { url: '127.0.0.1:7001', token: 'bm_saved' });
    expect(file).toBe(path.join(env.XDG_CONFIG_HOME!, 'bmctl/env.json'));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readSavedDefaults(env)).toEqual({ url: '127.0.0.1:7001', token: 'bm_saved' });
    removeSavedDefaults(env);
    expect(readSavedDefaults(env)).toBeNull();
  });

  it("carry a TLS lab's CA, which --ca or BM_CA override", () => {
    const env = home();
    saveDefaults(env, { url: '127.0.0.1:7001', token: 'bm_saved', ca: '/tmp/lab/ca.pem' });
    expect(apiTarget({}, env)).toEqual({ url: '127.0.0.1:7001', token: 'bm_saved', ca: '/tmp/lab/ca.pem' });
    expect(apiTarget({ ca: '/etc/bm/ca.pem' }, env)).toEqual({ url: '127.0.0.1:7001', token: 'bm_saved', ca: '/etc/bm/ca.pem' });
    expect(apiTarget({}, { ...env, BM_CA: '/etc/bm/env-ca.pem' }).ca).toBe('/etc/bm/env-ca.pem');
    // An address given by hand gets no saved CA either.
    expect(apiTarget({ url: '10.0.0.1:6385' }, env)).toEqual({ url: '10.0.0.1:6385' });
  });

  it('fall back to ~/.config without XDG_CONFIG_HOME', () => {
    const env = home();
    expect(savedDefaultsPath({ HOME: env.HOME })).toBe(path.join(env.HOME!, '.config/bmctl/env.json'));
  });

  it('are used only when none of --url, --token, BM_URL and BM_TOKEN is set', () => {
    const env = home();
    saveDefaults(env, { url: '127.0.0.1:7001', token: 'bm_saved' });
    expect(apiTarget({}, env)).toEqual({ url: '127.0.0.1:7001', token: 'bm_saved' });
    // A token given by hand never goes with the saved address, nor the saved token to an address given by hand.
    expect(apiTarget({ url: '10.0.0.1:6385' }, env)).toEqual({ url: '10.0.0.1:6385' });
    expect(apiTarget({}, { ...env, BM_TOKEN: 'bm_env' })).toEqual({ url: DEFAULT_API_URL, token: 'bm_env' });
    expect(apiTarget({ token: 'bm_flag' }, { ...env, BM_URL: '10.0.0.2:6385' })).toEqual({ url: '10.0.0.2:6385', token: 'bm_flag' });
  });

  it('are ignored when the file is malformed', () => {
    const env = home();
    const file = saveDefaults(env, { url: 'x', token: 'y' });
    // A half-written or hand-edited file must not break bmctl.
    writeFileSync(file, '{"url": 5');
    expect(apiTarget({}, env)).toEqual({ url: DEFAULT_API_URL });
  });
});
