/**
 * Deleting an instance whose node another task holds: the caller gets
 * ABORTED naming the holder, the instance stays as it was (not ERROR with
 * "delete failed"), and the same delete goes through once the lock is gone.
 * Real controller process, MariaDB, NATS; a node on the fake power driver.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { InstanceService } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { type ControllerProcess, runBmctl, startControllerProcess } from '../../controller/lab/index.ts';

let dir: string;
let ctl: ControllerProcess;
let api: RpcConnection;
let db: DbHandle;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-dellock-'));
  ctl = await startControllerProcess({
    logLevel: 'warn',
    extraToml: ['[conductor]', 'callback_timeout_s = 1', 'poll_ms = 200'].join('\n'),
  });
  api = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
  db = await openDatabase(ctl.databaseUrl, { connectionLimit: 2 });
  await api.client(NodeService).createNode({
    name: 'dellock-0',
    pmAddress: 'fake-0',
    pmUser: 'admin',
    pmPassword: 'dellock-bmc-secret',
    powerDriver: 'fake',
    cpus: 4,
    memoryMb: 8192,
    localGb: 10,
    cpuArch: 'x86_64',
    mac: '52:54:00:de:10:00',
  });
  // Fixture: the node as cleaning leaves it (cleaning runs with real agents in other tests).
  await db.pool.query("UPDATE nodes SET provision_state = 'available'");
  const image = path.join(dir, 'tiny.raw');
  await writeFile(image, randomBytes(4096));
  await truncate(image, 1024 * 1024);
  const env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
  expect((await runBmctl(['image', 'create', image, '--name', 'dellock-image', '--disk-format', 'raw'], env)).code).toBe(0);
  expect((await runBmctl(['flavor', 'create', 'dellock', '--ram', '4096', '--disk', '1', '--cpus', '2'], env)).code).toBe(0);
}, 120_000);

afterAll(async () => {
  api?.close();
  await db?.close();
  await ctl?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('deleting an instance on a locked node', () => {
  it('is refused as ABORTED without touching the instance, and goes through once the lock is gone', async () => {
    const instances = api.client(InstanceService);
    const vm = await instances.createInstance({ name: 'dellock-vm', flavor: 'dellock', image: 'dellock-image' });
    // The fake power driver boots no agent: the deploy fails at its callback timeout, leaving the node deploy-failed.
    let failed = await instances.getInstance({ id: vm.uuid });
    for (const deadline = Date.now() + 60_000; failed.state !== 'ERROR' && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 200));
      failed = await instances.getInstance({ id: vm.uuid });
    }
    expect(failed.state, failed.lastError).toBe('ERROR');
    // Another task of the same controller holds the node (as one that ended while fenced did before it was released).
    const [rows] = await db.pool.query<import('mysql2/promise').RowDataPacket[]>('SELECT id FROM controllers');
    const self = String(rows[0]?.id);
    await db.pool.query('UPDATE nodes SET reservation = ? WHERE uuid = ?', [self, vm.nodeUuid]);

    await expect(instances.deleteInstance({ id: vm.uuid })).rejects.toMatchObject({
      code: status.ABORTED,
      details: expect.stringMatching(new RegExp(`locked by controller ${self}; retry`)),
    });
    expect(await instances.getInstance({ id: vm.uuid })).toMatchObject({ state: 'ERROR', lastError: failed.lastError });

    await db.pool.query('UPDATE nodes SET reservation = NULL WHERE uuid = ?', [vm.nodeUuid]);
    const deleting = await instances.deleteInstance({ id: vm.uuid });
    expect(['DELETING', 'DELETED']).toContain(deleting.state);
  }, 120_000);
});
