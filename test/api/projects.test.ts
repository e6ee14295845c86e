/**
 * Projects: a member token sees and touches only its project's instances and
 * nothing of the fleet (nodes, BMCs, uploads, tokens); an admin sees all.
 * Real controller process, MariaDB, NATS; nodes on the fake power driver.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { EventService } from '../../proto/gen/bm/v1/event_pb.js';
import { FlavorService } from '../../proto/gen/bm/v1/flavor_pb.js';
import { InstanceService } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { TokenService } from '../../proto/gen/bm/v1/token_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { type ControllerProcess, runBmctl, startControllerProcess } from '../../controller/lab/index.ts';

let dir: string;
let ctl: ControllerProcess;
let admin: RpcConnection;
let db: DbHandle;
const open: RpcConnection[] = [];

function as(token: string): RpcConnection {
  const c = connect(ctl.url, { metadata: { authorization: `Bearer ${token}` } });
  open.push(c);
  return c;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-proj-'));
  ctl = await startControllerProcess({
    logLevel: 'warn',
    extraToml: ['[conductor]', 'callback_timeout_s = 1', 'poll_ms = 200'].join('\n'),
  });
  admin = as(ctl.token);
  db = await openDatabase(ctl.databaseUrl, { connectionLimit: 2 });
  for (let i = 0; i < 4; i++) {
    await admin.client(NodeService).createNode({
      name: `proj-${i}`,
      pmAddress: `fake-${i}`,
      pmUser: 'admin',
      pmPassword: 'proj-bmc-secret',
      powerDriver: 'fake',
      cpus: 4,
      memoryMb: 8192,
      localGb: 10,
      cpuArch: 'x86_64',
      mac: `52:54:00:dd:00:0${i}`,
    });
  }
  // Fixture: nodes as cleaning leaves them (cleaning runs with real agents in other tests).
  await db.pool.query("UPDATE nodes SET provision_state = 'available'");
  const image = path.join(dir, 'tiny.raw');
  await writeFile(image, randomBytes(4096));
  await truncate(image, 1024 * 1024);
  const env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
  expect((await runBmctl(['image', 'create', image, '--name', 'proj-image', '--disk-format', 'raw'], env)).code).toBe(0);
  expect((await runBmctl(['flavor', 'create', 'proj', '--ram', '4096', '--disk', '1', '--cpus', '2'], env)).code).toBe(0);
}, 90_000);

afterAll(async () => {
  for (const c of open) c.close();
  await db?.close();
  await ctl?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('project tokens', () => {
  it('keeps each project to its own instances, and members away from the fleet', async () => {
    const made = await runBmctl(['--json', 'token', 'create', '--project', 'alpha', '--role', 'member'], {
      BM_URL: ctl.url,
      BM_TOKEN: ctl.token,
    });
    expect(made.code, made.stderr).toBe(0);
    const alphaToken = (JSON.parse(made.stdout) as { token: string }).token;
    const beta = await admin.client(TokenService).createToken({ project: 'beta', role: 'member' });
    const alpha = as(alphaToken).client(InstanceService);
    const betaApi = as(beta.token);

    const vm = await alpha.createInstance({ name: 'alpha-vm', flavor: 'proj', image: 'proj-image' });
    expect(vm.project).toBe('alpha');
    await betaApi.client(InstanceService).createInstance({ name: 'beta-vm', flavor: 'proj', image: 'proj-image' });

    // alpha sees its own; beta cannot list, show, delete, reboot or power alpha's.
    expect((await alpha.listInstances({})).instances.map((i) => i.name)).toEqual(['alpha-vm']);
    const b = betaApi.client(InstanceService);
    expect((await b.listInstances({})).instances.map((i) => i.name)).toEqual(['beta-vm']);
    await expect(b.listInstances({ project: 'alpha' })).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    for (const call of [
      () => b.getInstance({ id: vm.uuid }),
      () => b.deleteInstance({ id: vm.uuid }),
      () => b.rebootInstance({ id: vm.uuid, hard: true }),
      () => b.setInstancePower({ id: vm.uuid, target: 'off' }),
      () => b.getInstance({ id: 'alpha-vm' }),
    ]) {
      await expect(call()).rejects.toMatchObject({ code: status.NOT_FOUND });
    }
    // A flavor in use cannot be deleted.
    await expect(admin.client(FlavorService).deleteFlavor({ id: 'proj' })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/used by 2 instance/),
    });
    // The admin sees both.
    expect((await admin.client(InstanceService).listInstances({})).instances.map((i) => i.name).sort()).toEqual(['alpha-vm', 'beta-vm']);
    expect((await admin.client(InstanceService).listInstances({ project: 'beta' })).instances.map((i) => i.name)).toEqual(['beta-vm']);

    // Members reach nothing of the fleet: nodes (with their BMC details), flavor changes, tokens, all events.
    const alphaConn = as(alphaToken);
    await expect(alphaConn.client(NodeService).listNodes({})).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    await expect(alphaConn.client(NodeService).getNode({ id: vm.nodeUuid })).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
    await expect(alphaConn.client(FlavorService).createFlavor({ name: 'mine', ramMb: 1, diskGb: 1, cpus: 1 })).rejects.toMatchObject({
      code: status.PERMISSION_DENIED,
    });
    await expect(alphaConn.client(TokenService).createToken({ project: 'alpha', role: 'admin' })).rejects.toMatchObject({
      code: status.PERMISSION_DENIED,
    });
    expect((await alphaConn.client(FlavorService).listFlavors({})).flavors.map((f) => f.name)).toContain('proj');
    const everything = alphaConn.client(EventService).watch({ nodeUuid: '' });
    await expect(
      (async () => {
        for await (const _ of everything) break;
      })(),
    ).rejects.toMatchObject({ code: status.PERMISSION_DENIED });

    // A deleted token stops working (within the directory's cache interval).
    const list = await admin.client(TokenService).listTokens({});
    const betaId = list.tokens.find((t) => t.project === 'beta')!.id;
    await admin.client(TokenService).deleteToken({ id: betaId });
    await new Promise((r) => setTimeout(r, 10_500));
    await expect(b.listInstances({})).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
    // Only digests are stored.
    const [rows] = await db.pool.query<import('mysql2/promise').RowDataPacket[]>('SELECT hash FROM api_tokens');
    expect(JSON.stringify(rows)).not.toContain(alphaToken);
  }, 60_000);
});
