/**
 * The API with TLS on, against real processes: a TLS-only controller refuses
 * plaintext, bmctl verifies it with --ca/BM_CA and says what to pass without
 * one, a renewed certificate is served without a restart (a half-written
 * renewal never is), and a bad pair stops the start naming its key.
 */
import { mkdtemp, rename, rm, copyFile } from 'node:fs/promises';
import { connect as tlsConnect } from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { Health } from '../../proto/gen/grpc/health/v1/health_pb.js';
import { connect, tlsCredentials } from '../../proto/rpc/index.ts';
import { type ControllerProcess, runBmctl, startControllerProcess } from '../../controller/lab/index.ts';
import { validateConfig } from '../../controller/config/load.ts';
import { makeCa, makeServerCert, type CaFiles } from '../../controller/lab/tls-certs.ts';

let dir: string;
let ca: CaFiles;
let ctl: ControllerProcess;
let served: { cert: string; key: string };

/** The serial number of the certificate the server at port presents now. */
function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    socket.once('secureConnect', () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.destroy();
      resolve(serial);
    });
    socket.once('error', reject);
  });
}

const portOf = (url: string): number => Number(url.slice(url.lastIndexOf(':') + 1));

async function opensslSerial(cert: string): Promise<string> {
  const { X509Certificate } = await import('node:crypto');
  const { readFile } = await import('node:fs/promises');
  return new X509Certificate(await readFile(cert)).serialNumber;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-tls-'));
  ca = await makeCa(dir, 'ca');
  const first = await makeServerCert(dir, ca, 'server1');
  // The controller reads these paths; renewals replace the files behind them.
  served = { cert: path.join(dir, 'api.pem'), key: path.join(dir, 'api.key') };
  await copyFile(first.cert, served.cert);
  await copyFile(first.key, served.key);
  ctl = await startControllerProcess({ logLevel: 'info', tls: { cert: served.cert, key: served.key, ca: ca.cert, reloadMs: 200 } });
}, 60_000);

afterAll(async () => {
  await ctl?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('a TLS-only API', () => {
  it('refuses a plaintext client and serves one that verifies it against the CA', async () => {
    const plain = connect(ctl.url, { credentials: grpc.credentials.createInsecure() });
    try {
      await expect(plain.client(Health).check({}, { timeoutMs: 3000 })).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    } finally {
      plain.close();
    }
    const { readFile } = await import('node:fs/promises');
    const secure = connect(ctl.url, { credentials: tlsCredentials(await readFile(ca.cert)) });
    try {
      expect((await secure.client(Health).check({}, { timeoutMs: 3000 })).status).toBe(1);
    } finally {
      secure.close();
    }
  });

  it('bmctl works with --ca, BM_CA or https:// plus --ca, and fails in one line saying to pass --ca without one', async () => {
    const token = { BM_TOKEN: ctl.token };
    const withFlag = await runBmctl(['node', 'list', '--url', ctl.url, '--ca', ca.cert, '--json'], token);
    expect(withFlag.stderr).toBe('');
    expect(withFlag.code).toBe(0);
    expect(JSON.parse(withFlag.stdout)).toEqual([]);
    const withEnv = await runBmctl(['node', 'list', '--url', `https://${ctl.url}`], { ...token, BM_CA: ca.cert });
    expect(withEnv.code).toBe(0);

    // BM_CA emptied: the run's environment names the suite's CA.
    const without = await runBmctl(['node', 'list', '--url', ctl.url], { ...token, BM_CA: '' });
    expect(without.code).toBe(1);
    expect(without.stderr.trim().split('\n')).toHaveLength(1);
    expect(without.stderr).toMatch(/speaks TLS: pass --ca FILE \(or set BM_CA\)/);

    const stranger = await makeCa(dir, 'other-ca');
    const wrongCa = await runBmctl(['node', 'list', '--url', ctl.url, '--ca', stranger.cert], token);
    expect(wrongCa.code).toBe(1);
    expect(wrongCa.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrongCa.stderr).toMatch(/cannot verify the controller at 127\.0\.0\.1:\d+ against .*other-ca\.pem/);
    expect(wrongCa.stderr).not.toContain(ctl.token);
  });

  it('serves a renewed certificate without a restart, and keeps the old one while the new pair is incomplete', async () => {
    const port = portOf(ctl.url);
    const before = await servedSerial(port);
    expect(before).toBe(await opensslSerial(served.cert));

    // Half a renewal: the new certificate is in place, its key is not yet.
    const renewed = await makeServerCert(dir, ca, 'server2');
    await copyFile(renewed.cert, `${served.cert}.tmp`);
    await rename(`${served.cert}.tmp`, served.cert);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await servedSerial(port)).toBe(before);
    expect(ctl.logs()).toMatch(/not a usable pair yet; still serving the previous certificate/);

    await copyFile(renewed.key, `${served.key}.tmp`);
    await rename(`${served.key}.tmp`, served.key);
    const want = await opensslSerial(renewed.cert);
    const deadline = Date.now() + 10_000;
    let now = before;
    while (Date.now() < deadline && now !== want) {
      await new Promise((r) => setTimeout(r, 100));
      now = await servedSerial(port);
    }
    expect(now).toBe(want);
    expect(ctl.logs()).toMatch(/API TLS certificate reloaded/);
    // Same process, and bmctl still verifies it.
    const after = await runBmctl(['node', 'list', '--url', ctl.url, '--ca', ca.cert], { BM_TOKEN: ctl.token });
    expect(after.code).toBe(0);
  });

  it('a key without a certificate (or the other way round) is refused at start, naming the key', async () => {
    expect(() => validateConfig({ api: { tls_cert: '/etc/bm/api.pem' } })).toThrow(/api\.tls_key/);
    expect(() => validateConfig({ api: { tls_key: '/etc/bm/api.key' } })).toThrow(/api\.tls_cert/);
    const other = await makeServerCert(dir, ca, 'mismatch');
    await expect(startControllerProcess({ tls: { cert: served.cert, key: other.key, ca: ca.cert } })).rejects.toThrow(
      /api\.tls_key: .*mismatch\.key is not the private key of/,
    );
  }, 60_000);
});
