/**
 * The suite's controllers serve TLS by default: a controller started with no
 * TLS options refuses a plaintext client and presents a certificate for
 * 127.0.0.1 signed by the suite's CA, while the way tests reach it does not
 * change: connect(ctl.url) and bmctl with only BM_URL and BM_TOKEN verify it
 * (the handle's address is trusted in this process, BM_CA is in the run's
 * environment). A test that wants plaintext says `tls: false`.
 */
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus } from '../../proto/gen/grpc/health/v1/health_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect } from '../../proto/rpc/index.ts';
import { bmctlPath, repoRoot, runBmctl, startControllerProcess, type ControllerProcess } from '../../controller/lab/index.ts';

let ctl: ControllerProcess;
let plain: ControllerProcess;

/** The certificate the server at host:port presents, unverified: what it serves, not whether we trust it. */
function presented(url: string): Promise<PeerCertificate> {
  const port = Number(url.slice(url.lastIndexOf(':') + 1));
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate(true);
      socket.destroy();
      resolve(cert);
    });
    socket.once('error', reject);
  });
}

async function health(conn: ReturnType<typeof connect>): Promise<HealthCheckResponse_ServingStatus> {
  try {
    return (await conn.client(Health).check({}, { timeoutMs: 3000 })).status;
  } finally {
    conn.close();
  }
}

beforeAll(async () => {
  [ctl, plain] = await Promise.all([
    startControllerProcess({ logLevel: 'info' }),
    startControllerProcess({ logLevel: 'info', tls: false }),
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.all([ctl?.stop(), plain?.stop()]);
});

describe("the suite's default controller", () => {
  it('speaks TLS only, with a certificate for 127.0.0.1 from the CA the run names in BM_CA', async () => {
    expect(process.env.BM_CA).toBeTruthy();
    expect(ctl.ca).toBe(process.env.BM_CA);
    const refused = connect(ctl.url, { credentials: grpc.credentials.createInsecure() });
    await expect(health(refused)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });

    const served = new X509Certificate((await presented(ctl.url)).raw);
    const ca = new X509Certificate(await readFile(process.env.BM_CA!));
    expect(served.verify(ca.publicKey)).toBe(true);
    expect(served.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(served.checkHost('localhost')).toBe('localhost');
    expect(ca.ca).toBe(true);
  });

  it('is reached the way tests always reached it: connect(ctl.url) and bmctl with BM_URL and BM_TOKEN', async () => {
    expect(await health(connect(ctl.url))).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(await health(connect(ctl.url.replace('127.0.0.1', 'localhost')))).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const api = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
    try {
      await api.client(NodeService).createNode({
        name: 'tls-default-1',
        pmAddress: '192.0.2.10',
        pmUser: 'admin',
        pmPassword: 'tls-default-secret',
        cpus: 2,
        memoryMb: 4096,
        localGb: 20,
        cpuArch: 'x86_64',
        mac: '52:54:00:aa:00:01',
      });
    } finally {
      api.close();
    }
    const listed = await runBmctl(['--json', 'node', 'list'], { BM_URL: ctl.url, BM_TOKEN: ctl.token });
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    expect((JSON.parse(listed.stdout) as { name: string }[]).map((n) => n.name)).toEqual(['tls-default-1']);

    // A bmctl spawned by hand with this process's environment, as several tests do.
    const watch = spawn(process.execPath, [bmctlPath, '--json', 'node', 'show', 'tls-default-1'], {
      cwd: repoRoot,
      env: { ...process.env, BM_URL: ctl.url, BM_TOKEN: ctl.token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    watch.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => watch.once('exit', resolve));
    expect(code).toBe(0);
    expect(JSON.parse(out)).toMatchObject({ name: 'tls-default-1' });
  });

  it('bmctl without the CA is told in one line to pass --ca', async () => {
    const without = await runBmctl(['node', 'list'], { BM_URL: ctl.url, BM_TOKEN: ctl.token, BM_CA: '' });
    expect(without.code).toBe(1);
    expect(without.stderr.trim().split('\n')).toHaveLength(1);
    expect(without.stderr).toMatch(/speaks TLS: pass --ca FILE \(or set BM_CA\)/);
  });
});

describe('a controller a test starts with tls: false', () => {
  it('serves plaintext, which connect(url) speaks to it, and says it has no CA', async () => {
    expect(plain.ca).toBeNull();
    await expect(presented(plain.url)).rejects.toThrow();
    expect(await health(connect(plain.url))).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const r = await runBmctl(['node', 'list'], { BM_URL: plain.url, BM_TOKEN: plain.token, BM_CA: '' });
    expect(r.code).toBe(0);
  });
});
