/**
 * Images on every controller: two real controller processes of one cluster
 * (one database, one NATS prefix) with `[images] store = "jetstream"`. An
 * image uploaded through A with the real bmctl is served by B's HTTP boot
 * port, whole and by range, from B's own cache, fetched from NATS.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  freeUdpPort,
  loopbackBootToml,
  natsUrl,
  runBmctl,
  startControllerProcess,
  uniqueDatabaseUrl,
  uniqueNatsPrefix,
  type ControllerProcess,
} from '../../controller/lab/index.ts';
import { bucketName } from '../../controller/images/jetstream-blob-store.ts';

let dir: string;
let a: ControllerProcess | undefined;
let b: ControllerProcess | undefined;
let nc: NatsConnection | undefined;
let bucket: string;
let httpB: number;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-js-images-'));
  const databaseUrl = uniqueDatabaseUrl('bm_jsimg');
  const natsPrefix = uniqueNatsPrefix();
  bucket = bucketName(natsPrefix, 'images');
  const shared = { BM_SECRETS_KEY: randomBytes(32).toString('base64'), BM_IMAGES_STORE: 'jetstream' };
  a = await startControllerProcess({
    databaseUrl,
    natsPrefix,
    logLevel: 'warn',
    env: { ...shared, BM_IMAGES_CACHE_DIR: path.join(dir, 'cache-a') },
    extraToml: '[controller]\nid = "ctl-a"',
  });
  httpB = await freePort();
  b = await startControllerProcess({
    databaseUrl,
    natsPrefix,
    logLevel: 'warn',
    env: { ...shared, BM_IMAGES_CACHE_DIR: path.join(dir, 'cache-b') },
    extraToml: ['[controller]', 'id = "ctl-b"', await loopbackBootToml({ dir, httpPort: httpB, tftpPort: await freeUdpPort() })].join('\n'),
  });
  nc = await connect({ servers: natsUrl });
}, 90_000);

afterAll(async () => {
  await b?.stop({ keepDatabase: true });
  await a?.stop();
  if (nc) {
    // The controllers keep their bucket (it is the cluster's image store); the test removes its own.
    await (await jetstreamManager(nc)).streams.delete(`OBJ_${bucket}`).catch(() => undefined);
    await nc.close();
  }
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => e.name);
}

describe('images in the JetStream object store', () => {
  it('serves an image uploaded through controller A from controller B, fetched into B’s cache', async () => {
    const kernel = randomBytes(3 * 1024 * 1024 + 12_345);
    const sha256 = createHash('sha256').update(kernel).digest('hex');
    const file = path.join(dir, 'kernel.aki');
    await writeFile(file, kernel);
    const made = await runBmctl(['image', 'create', file, '--name', 'shared-kernel', '--disk-format', 'aki', '--json'], {
      BM_URL: a!.url,
      BM_TOKEN: a!.token,
    });
    expect(made.code, made.stderr).toBe(0);

    // The bytes went to NATS: A's local store directory stays empty, and the bucket holds the object.
    expect(await filesUnder(path.join(a!.dir, 'images'))).toEqual([]);
    const info = await (await jetstreamManager(nc!)).streams.info(`OBJ_${bucket}`);
    expect(info.state.bytes).toBeGreaterThan(kernel.length);
    expect(await filesUnder(path.join(dir, 'cache-b'))).toEqual([]);

    const whole = await fetch(`http://127.0.0.1:${httpB}/images/shared-kernel`);
    expect(whole.status).toBe(200);
    expect(Buffer.from(await whole.arrayBuffer()).equals(kernel)).toBe(true);
    const part = await fetch(`http://127.0.0.1:${httpB}/images/shared-kernel`, { headers: { range: 'bytes=1048570-2097160' } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(kernel.subarray(1048570, 2097161))).toBe(true);
    expect(await filesUnder(path.join(dir, 'cache-b'))).toEqual([sha256]);
  });
});
