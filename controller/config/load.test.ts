import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './load.ts';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(text: string): Promise<string> {
  const p = path.join(dir, `${Math.random().toString(36).slice(2)}.toml`);
  await writeFile(p, text);
  return p;
}

const TOKEN = 'sha256:' + 'ab'.repeat(32);

describe('config', () => {
  it('fills defaults from DESIGN.md', async () => {
    const { config } = await loadConfig(undefined, {});
    expect(config.api.listen).toBe('0.0.0.0:6385');
    expect(config.database.url).toBe('mysql://root@127.0.0.1:3306/bm');
    expect(config.nats.url).toBe('nats://127.0.0.1:4222');
    expect(config.controller.groups).toEqual(['default']);
  });

  it('reads TOML and lets BM_<SECTION>_<KEY> override it', async () => {
    const p = await file(`[api]\nlisten = "127.0.0.1:7000"\ntokens = ["${TOKEN}"]\n[controller]\ngroups = ["a"]\n`);
    const { config, envUsed } = await loadConfig(p, {
      BM_API_LISTEN: '127.0.0.1:7001',
      BM_CONTROLLER_GROUPS: 'rack1, rack2',
      BM_SECRETS_KEY_FILE: '/tmp/k',
      BM_URL: 'x',
    });
    expect(config.api.listen).toBe('127.0.0.1:7001');
    expect(config.api.tokens).toEqual([TOKEN]);
    expect(config.controller.groups).toEqual(['rack1', 'rack2']);
    expect(config.secrets.key_file).toBe('/tmp/k');
    expect([...envUsed].sort()).toEqual(['BM_API_LISTEN', 'BM_CONTROLLER_GROUPS', 'BM_SECRETS_KEY_FILE']);
  });

  it('coerces numbers from the environment and names the variable when wrong', async () => {
    const ok = await loadConfig(undefined, { BM_DATABASE_POOL_SIZE: '4' });
    expect(ok.config.database.pool_size).toBe(4);
    await expect(loadConfig(undefined, { BM_DATABASE_POOL_SIZE: 'many' })).rejects.toThrow(
      /database\.pool_size: .*"many".*from BM_DATABASE_POOL_SIZE/,
    );
  });

  it('keeps images on local disk by default and takes the JetStream store with its bucket, replicas and cache', async () => {
    const { config } = await loadConfig(undefined, {});
    expect(config.images).toMatchObject({ store: 'local', bucket: 'images', replicas: 1, cache_dir: '/var/lib/bm/image-cache' });
    const p = await file('[images]\nstore = "jetstream"\nbucket = "img"\nreplicas = 3\ncache_dir = "/srv/cache"\n');
    expect((await loadConfig(p, {})).config.images).toMatchObject({
      store: 'jetstream',
      bucket: 'img',
      replicas: 3,
      cache_dir: '/srv/cache',
    });
    expect((await loadConfig(undefined, { BM_IMAGES_STORE: 'jetstream', BM_IMAGES_REPLICAS: '5' })).config.images.replicas).toBe(5);
    await expect(loadConfig(await file('[images]\nstore = "s3"\n'), {})).rejects.toThrow(/images\.store/);
    await expect(loadConfig(undefined, { BM_IMAGES_REPLICAS: '6' })).rejects.toThrow(/images\.replicas/);
    await expect(loadConfig(await file('[images]\nbucket = "a.b"\n'), {})).rejects.toThrow(/images\.bucket/);
  });

  it('names the key, the value and what was expected', async () => {
    const p = await file('[api]\nlisten = "nowhere"\n');
    await expect(loadConfig(p, {})).rejects.toThrow(ConfigError);
    await expect(loadConfig(p, {})).rejects.toThrow(/api\.listen: expected host:port, got "nowhere" \(in .*\.toml\)/);
  });

  it('validates [boot]: absent means no boot services, full mode needs a range on the server network', async () => {
    expect((await loadConfig(undefined, {})).config.boot).toBeUndefined();
    const good = await loadConfig(
      await file('[boot]\nserver_address = "10.0.0.1"\nrange_start = "10.0.0.100"\nrange_end = "10.0.0.200"\n'),
      { BM_BOOT_HTTP_PORT: '8080' },
    );
    expect(good.config.boot).toMatchObject({
      mode: 'full',
      dhcp_port: 67,
      proxy_port: 4011,
      tftp_port: 69,
      http_port: 8080,
      ipxe_bios: 'undionly.kpxe',
    });
    await expect(loadConfig(await file('[boot]\nserver_address = "10.0.0.1"\n'), {})).rejects.toThrow(
      /boot\.range_start: required when mode is "full"/,
    );
    await expect(
      loadConfig(await file('[boot]\nserver_address = "10.0.0.1"\nrange_start = "10.1.0.1"\nrange_end = "10.1.0.9"\n'), {}),
    ).rejects.toThrow(/boot\.range_start: the range must lie in 10\.0\.0\.0\/255\.255\.255\.0/);
    await expect(loadConfig(await file('[boot]\nserver_address = "10.0.0.300"\nmode = "proxy"\n'), {})).rejects.toThrow(
      /boot\.server_address: expected a dotted IPv4 address/,
    );
    expect((await loadConfig(await file('[boot]\nserver_address = "10.0.0.1"\nmode = "proxy"\n'), {})).config.boot?.mode).toBe('proxy');
  });

  it('refuses unknown keys and sections instead of ignoring typos', async () => {
    await expect(loadConfig(await file('[api]\nlisen = "1.2.3.4:5"\n'), {})).rejects.toThrow(/unknown key\(s\) lisen/);
    await expect(loadConfig(await file('[apii]\n'), {})).rejects.toThrow(/unknown key\(s\) apii/);
  });

  it('reports unknown BM_ variables of known sections', async () => {
    const { envUnknown } = await loadConfig(undefined, { BM_API_LISTN: 'x' });
    expect(envUnknown).toEqual(['BM_API_LISTN']);
  });

  it('never echoes a secret value', async () => {
    const err = await loadConfig(undefined, { BM_DATABASE_URL: 'postgres://u:topsecret@h/db' }).catch((e: Error) => e);
    expect(String(err)).toMatch(/database\.url/);
    expect(String(err)).not.toContain('topsecret');
  });

  it('explains a TOML syntax error and a missing file', async () => {
    await expect(loadConfig(await file('[api\nlisten='), {})).rejects.toThrow(/not valid TOML/);
    await expect(loadConfig(path.join(dir, 'missing.toml'), {})).rejects.toThrow(/cannot read config file .*ENOENT/);
  });

  it('checks token hashes', async () => {
    await expect(loadConfig(undefined, { BM_API_TOKENS: 'plaintext-token' })).rejects.toThrow(/api\.tokens/);
  });
});
