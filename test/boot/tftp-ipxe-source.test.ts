/**
 * The iPXE binaries as a stock Debian controller has them: Debian's `ipxe`
 * ships /usr/lib/ipxe/ipxe.efi as a link to /boot/ipxe.efi. Links in the
 * trusted iPXE directory are resolved at start and served; links in tftp_root
 * that lead out of it stay refused. Fetched with tftp-hpa's client.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DirectoryFileSource } from '../../controller/boot/tftp/file-source.ts';
import { IpxeOverlayFileSource } from '../../controller/boot/tftp/ipxe-file-source.ts';
import { TftpServer } from '../../controller/boot/tftp/server.ts';
import { requirePeer } from './peers.ts';

const run = promisify(execFile);
let dir: string;
let root: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'bm-tftp-ipxe-'));
  root = path.join(dir, 'root');
  await mkdir(root);
  await writeFile(path.join(dir, 'secret.txt'), 'outside the root\n');
  await symlink(path.join(dir, 'secret.txt'), path.join(root, 'escape'));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function serve(
  ipxeDir: string,
  names: readonly string[],
): Promise<{ server: TftpServer; port: number; source: IpxeOverlayFileSource }> {
  const source = await IpxeOverlayFileSource.create(new DirectoryFileSource(root), ipxeDir, names);
  const server = new TftpServer({ source, address: '127.0.0.1', port: 0, timeoutMs: 300 });
  return { server, port: (await server.start()).port, source };
}

async function hpaGet(port: number, remote: string): Promise<{ local: string; output: string }> {
  const tftp = requirePeer('/usr/bin/tftp');
  const local = path.join(dir, `got-${randomBytes(4).toString('hex')}`);
  const { stdout, stderr } = await run(tftp, ['-m', 'binary', '127.0.0.1', String(port), '-c', 'get', remote, local], { timeout: 20_000 });
  return { local, output: stdout + stderr };
}

describe('iPXE binaries from the package directory', () => {
  it("serves Debian's ipxe.efi, a link to /boot/ipxe.efi, byte-exact", async () => {
    requirePeer('/usr/lib/ipxe/ipxe.efi');
    // This machine's layout is the one the issue saw; say so if it ever changes.
    expect(await readlink('/usr/lib/ipxe/ipxe.efi')).toBe('/boot/ipxe.efi');
    const { server, port, source } = await serve('/usr/lib/ipxe', ['undionly.kpxe', 'ipxe.efi']);
    try {
      expect(source.resolved().get('ipxe.efi')).toBe('/boot/ipxe.efi');
      for (const name of ['ipxe.efi', 'undionly.kpxe']) {
        const { local, output } = await hpaGet(port, name);
        expect(output, name).not.toMatch(/Error/);
        expect((await readFile(local)).equals(await readFile(path.join('/usr/lib/ipxe', name)))).toBe(true);
      }
    } finally {
      await server.close();
    }
  });

  it('still refuses a link in tftp_root that leads out of it, also under an iPXE name the package lacks', async () => {
    const emptyIpxe = path.join(dir, 'no-ipxe');
    await mkdir(emptyIpxe);
    await symlink(path.join(dir, 'secret.txt'), path.join(root, 'snponly.efi'));
    const { server, port, source } = await serve(emptyIpxe, ['snponly.efi']);
    try {
      expect(source.resolved().size).toBe(0);
      for (const name of ['escape', 'snponly.efi', '../secret.txt']) {
        const { local, output } = await hpaGet(port, name);
        expect(output, name).toMatch(/Error code 2: access outside the root refused/);
        await expect(readFile(local, 'utf8').catch(() => '')).resolves.not.toContain('outside the root');
      }
    } finally {
      await server.close();
    }
  });
});
