/**
 * The suite's CA cache (controller/lab/suite-tls.ts) in a directory of the
 * test's own: made once with openssl, reused while it has a day left, made
 * again when it would expire during a run or a file of it is damaged, and
 * what it makes is a CA and a 127.0.0.1/localhost certificate it signed.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureSuiteTls, prepareSuiteTls, SUITE_TLS_DIR_ENV, suiteTls, unusableBecause } from '../../controller/lab/suite-tls.ts';

const DAY_MS = 86_400_000;
let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'bm-suite-tls-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("the suite's TLS cache", () => {
  it('makes a CA and a certificate it signed for 127.0.0.1 and localhost, private to its owner', async () => {
    const cache = path.join(root, 'fresh');
    const set = await ensureSuiteTls(cache);
    expect(await readlink(path.join(cache, 'current'))).toBe(path.basename(set.dir));
    const ca = new X509Certificate(await readFile(set.ca));
    const cert = new X509Certificate(await readFile(set.cert));
    expect(ca.ca).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(Date.parse(cert.validTo) - Date.now()).toBeGreaterThan(20 * DAY_MS);
    expect((await stat(set.dir)).mode & 0o077).toBe(0);
    expect(await unusableBecause(set)).toBeNull();
  });

  it('reuses the set on the next run without running openssl, and makes a new one when it would expire within a day', async () => {
    const cache = path.join(root, 'reuse');
    const first = await ensureSuiteTls(cache);
    const before = await stat(first.cert);
    const again = await ensureSuiteTls(cache);
    expect(again).toEqual(first);
    expect((await stat(first.cert)).mtimeMs).toBe(before.mtimeMs);

    const validTo = Date.parse(new X509Certificate(await readFile(first.cert)).validTo);
    const lateRun = validTo - DAY_MS / 2;
    expect(await unusableBecause(first, lateRun)).toMatch(/expires within a day/);
    const renewed = await ensureSuiteTls(cache, lateRun);
    expect(renewed.dir).not.toBe(first.dir);
    expect(await readlink(path.join(cache, 'current'))).toBe(path.basename(renewed.dir));
    // The old set stays for a controller of another run that may still read it.
    expect((await stat(first.cert)).isFile()).toBe(true);
  });

  it('makes a new set when a file of the cached one is damaged', async () => {
    const cache = path.join(root, 'damaged');
    const first = await ensureSuiteTls(cache);
    await writeFile(first.key, 'not a key\n');
    expect(await unusableBecause(first)).toMatch(/unreadable/);
    const next = await ensureSuiteTls(cache);
    expect(next.dir).not.toBe(first.dir);
    expect(await unusableBecause(next)).toBeNull();
  });

  it("is what this run's environment names: BM_CA for bmctl, the set's directory for the controllers", async () => {
    const set = await suiteTls();
    expect(process.env[SUITE_TLS_DIR_ENV]).toBe(set.dir);
    expect(process.env.BM_CA).toBe(set.ca);
    const env: Record<string, string | undefined> = {};
    const prepared = await prepareSuiteTls(env);
    expect(env).toEqual({ [SUITE_TLS_DIR_ENV]: prepared.dir, BM_CA: prepared.ca });
  });
});
