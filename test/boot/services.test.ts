/**
 * The boot services wired from a parsed `[boot]` config: iPXE binaries come
 * straight from Debian's ipxe directory over TFTP (tftp-hpa client), the
 * per-MAC script over HTTP (curl). DHCP is off here (its own tests bind 67
 * inside namespaces).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootConfigSchema } from '../../controller/boot/config.ts';
import { MemoryBootBackend } from '../../controller/boot/memory-backend.ts';
import { startBootServices, type BootServices } from '../../controller/boot/services.ts';
import { requirePeer } from './peers.ts';

const run = promisify(execFile);
let dir: string;
let services: BootServices;
let tftpPort: number;
let httpPort: number;

beforeAll(async () => {
  requirePeer('/usr/lib/ipxe/undionly.kpxe');
  dir = await mkdtemp(path.join(tmpdir(), 'bm-services-'));
  tftpPort = 20000 + Math.floor(Math.random() * 20000);
  httpPort = tftpPort + 1;
  const config = bootConfigSchema.parse({
    server_address: '127.0.0.1',
    bind_address: '127.0.0.1',
    mode: 'off',
    tftp_root: dir,
    tftp_port: String(tftpPort),
    http_port: String(httpPort),
    http_root: dir,
    discovery: 'true',
  });
  services = await startBootServices(config, {
    backend: new MemoryBootBackend(),
    states: { bootStateFor: async () => null },
    controllerUrl: 'http://127.0.0.1:6385',
  });
});

afterAll(async () => {
  await services?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('boot services from config', () => {
  it('serves undionly.kpxe from the ipxe package over TFTP and a discovery script over HTTP', async () => {
    const tftp = requirePeer('/usr/bin/tftp');
    const local = path.join(dir, 'got.kpxe');
    await run(tftp, ['-m', 'binary', '127.0.0.1', String(tftpPort), '-c', 'get', 'undionly.kpxe', local]);
    const sha = async (f: string): Promise<string> =>
      createHash('sha256')
        .update(await readFile(f))
        .digest('hex');
    expect(await sha(local)).toBe(await sha('/usr/lib/ipxe/undionly.kpxe'));
    const { stdout } = await run('curl', ['-sS', `http://127.0.0.1:${httpPort}/boot/52:54:00:aa:bb:cc.ipxe`]);
    expect(stdout).toContain('bm.purpose=discovery');
    expect(stdout).toContain(`kernel --name kernel http://127.0.0.1:${httpPort}/images/deploy/vmlinuz`);
  });
});
