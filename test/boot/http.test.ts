/**
 * The HTTP boot server with curl as the client: per-MAC iPXE scripts, ranged
 * kernel/ramdisk downloads, confinement to the blob root, and streaming
 * without holding a file in memory.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeBootState } from '../../controller/boot/boot-plan.ts';
import { DirectoryBlobSource } from '../../controller/boot/http/blob-source.ts';
import { HttpBootServer } from '../../controller/boot/http/server.ts';
import { LeaseGate } from '../../controller/boot/http/client-gate.ts';
import { MemoryBootBackend } from '../../controller/boot/memory-backend.ts';

const run = promisify(execFile);
const DEPLOYING = '52:54:00:dd:00:01';
const ACTIVE = '52:54:00:dd:00:02';

let dir: string;
let server: HttpBootServer;
let discoveryServer: HttpBootServer;
let base: string;
let discoveryBase: string;
// curl connects from 127.0.0.1, which holds a lease; 127.0.0.9 is a stranger until it gets one.
const leases = new MemoryBootBackend();
const kernel = randomBytes(1_000_003);

async function curl(args: string[]): Promise<{ status: number; body: Buffer; headers: string }> {
  const headersFile = path.join(dir, `h-${randomBytes(4).toString('hex')}`);
  const { stdout } = await run('curl', ['-sS', '-D', headersFile, '--path-as-is', ...args], {
    encoding: 'buffer',
    maxBuffer: 64 * 1024 * 1024,
  });
  const h = await readFile(headersFile, 'utf8');
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(h)?.[1]), body: stdout, headers: h };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'bm-http-'));
  const root = path.join(dir, 'root');
  await mkdir(path.join(root, 'deploy'), { recursive: true });
  await writeFile(path.join(root, 'deploy/vmlinuz'), kernel);
  await writeFile(path.join(root, 'deploy/initrd'), 'initrd');
  await writeFile(path.join(dir, 'secret'), 'SECRET-CONTENT');
  await symlink(path.join(dir, 'secret'), path.join(root, 'escape'));
  await writeFile(path.join(root, 'huge.img'), '');
  await truncate(path.join(root, 'huge.img'), 512 * 1024 * 1024);
  const states = {
    async bootStateFor(mac: string): Promise<NodeBootState | null> {
      if (mac === DEPLOYING)
        return {
          nodeUuid: '0f0e0d0c-0b0a-4908-8706-050403020100',
          provisionState: 'deploying',
          agentToken: 'token_0123456789abcdef',
          deployKernel: null,
          deployRamdisk: null,
        };
      if (mac === ACTIVE)
        return {
          nodeUuid: '1f0e0d0c-0b0a-4908-8706-050403020100',
          provisionState: 'active',
          agentToken: null,
          deployKernel: null,
          deployRamdisk: null,
        };
      return null;
    },
  };
  const plan = {
    httpBase: 'http://127.0.0.1:6386',
    controllerUrl: 'http://127.0.0.1:6385',
    defaultKernel: 'deploy/vmlinuz',
    defaultRamdisk: 'deploy/initrd',
    discovery: false,
    kernelArgs: ['console=ttyS0'],
  };
  await leases.commitLease({ mac: '52:54:00:dd:00:10', ip: '127.0.0.1', expiresAt: Date.now() + 3600_000 });
  await leases.commitLease({ mac: DEPLOYING, ip: '127.0.0.2', expiresAt: Date.now() + 3600_000 });
  const clients = new LeaseGate(leases);
  server = new HttpBootServer({ states, blobs: new DirectoryBlobSource(root), clients, plan, address: '0.0.0.0', port: 0 });
  base = `http://127.0.0.1:${(await server.start()).port}`;
  discoveryServer = new HttpBootServer({
    states,
    blobs: new DirectoryBlobSource(root),
    clients,
    plan: { ...plan, discovery: true },
    address: '127.0.0.1',
    port: 0,
  });
  discoveryBase = `http://127.0.0.1:${(await discoveryServer.start()).port}`;
});

afterAll(async () => {
  await server?.close();
  await discoveryServer?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('HTTP boot server', () => {
  it("serves the deploy script of a deploying node, with controller URL, uuid and token, to that node's leased address only", async () => {
    // Another leased machine (127.0.0.1 holds a different MAC's lease) gets no script, let alone the token.
    const stranger = await curl([`${base}/boot/${DEPLOYING}.ipxe`]);
    expect(stranger.status).toBe(403);
    expect(stranger.body.toString()).not.toContain('bm.token');
    const r = await curl(['--interface', '127.0.0.2', `${base}/boot/${DEPLOYING}.ipxe`]);
    expect(r.status).toBe(200);
    const s = r.body.toString();
    expect(s.startsWith('#!ipxe\n')).toBe(true);
    expect(s).toContain(
      'kernel --name kernel http://127.0.0.1:6386/images/deploy/vmlinuz initrd=initrd bm.controller=http://127.0.0.1:6385 bm.purpose=deploy bm.node=0f0e0d0c-0b0a-4908-8706-050403020100 bm.token=token_0123456789abcdef',
    );
    // iPXE may ask with ${mac:hexhyp}: the hyphen spelling works too.
    expect((await curl(['--interface', '127.0.0.2', `${base}/boot/52-54-00-dd-00-01.ipxe`])).status).toBe(200);
  });

  it('boots an active node from its disk, 404s unknown MACs unless discovery is on', async () => {
    expect((await curl([`${base}/boot/${ACTIVE}.ipxe`])).body.toString()).toContain('sanboot');
    expect((await curl([`${base}/boot/52:54:00:ee:ee:ee.ipxe`])).status).toBe(404);
    const disc = await curl([`${discoveryBase}/boot/52:54:00:ee:ee:ee.ipxe`]);
    expect(disc.status).toBe(200);
    expect(disc.body.toString()).toContain('bm.purpose=discovery');
    expect((await curl([`${base}/boot/not-a-mac.ipxe`])).status).toBe(404);
  });

  it('streams a kernel whole and by ranges', async () => {
    const whole = await curl([`${base}/images/deploy/vmlinuz`]);
    expect(whole.status).toBe(200);
    expect(whole.headers).toMatch(/accept-ranges: bytes/i);
    expect(createHash('sha256').update(whole.body).digest('hex')).toBe(createHash('sha256').update(kernel).digest('hex'));
    const part = await curl(['-r', '1000-1999', `${base}/images/deploy/vmlinuz`]);
    expect(part.status).toBe(206);
    expect(part.headers).toMatch(/content-range: bytes 1000-1999\/1000003/i);
    expect(part.body.equals(kernel.subarray(1000, 2000))).toBe(true);
    const tail = await curl(['-r', '-3', `${base}/images/deploy/vmlinuz`]);
    expect(tail.body.equals(kernel.subarray(kernel.length - 3))).toBe(true);
    const open = await curl(['-r', '999990-', `${base}/images/deploy/vmlinuz`]);
    expect(open.body.equals(kernel.subarray(999990))).toBe(true);
    const beyond = await curl(['-r', '2000000-', `${base}/images/deploy/vmlinuz`]);
    expect(beyond.status).toBe(416);
    expect(beyond.headers).toMatch(/content-range: bytes \*\/1000003/i);
  });

  it('never serves a path outside its root', async () => {
    for (const p of [
      '/images/../../secret',
      '/images/%2e%2e/secret',
      '/images/..%2fsecret',
      '/images/deploy/%2e%2e/%2e%2e/secret',
      '/images/%2fetc%2fpasswd',
      '/images/escape',
    ]) {
      const r = await curl([`${base}${p}`]);
      expect(r.status, p).toBeGreaterThanOrEqual(400);
      expect(r.body.toString(), p).not.toContain('SECRET-CONTENT');
    }
    expect((await curl([`${base}/images/escape`])).status).toBe(403);
    expect((await curl([`${base}/images/%2e%2e/secret`])).status).toBe(403);
    expect((await curl([`${base}/images/missing`])).status).toBe(404);
    expect((await curl(['-X', 'POST', `${base}/images/deploy/vmlinuz`])).status).toBe(405);
  });

  it('serves kernels only to an address holding a lease', async () => {
    const stranger = await curl(['--interface', '127.0.0.9', `${base}/images/deploy/vmlinuz`]);
    expect(stranger.status).toBe(403);
    expect(stranger.body.length).toBeLessThan(200);
    expect(server.stats.strangers).toBeGreaterThanOrEqual(1);
    // A refusal is not remembered: once the address is leased, it may fetch at once.
    await leases.commitLease({ mac: '52:54:00:dd:00:19', ip: '127.0.0.9', expiresAt: Date.now() + 3600_000 });
    const leased = await curl(['--interface', '127.0.0.9', `${base}/images/deploy/vmlinuz`]);
    expect(leased.status).toBe(200);
    expect(leased.body.equals(kernel)).toBe(true);
  });

  it('streams a 512 MiB image without holding it in memory', async () => {
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const { stdout } = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{size_download}', `${base}/images/huge.img`]);
    clearInterval(sampler);
    expect(Number(stdout)).toBe(512 * 1024 * 1024);
    // Far below the file's size: chunks stream through; nothing holds the file.
    expect(peak - before).toBeLessThan(128 * 1024 * 1024);
  });
});
