/**
 * AgentRegistry against a real controller: per-operation agent tokens,
 * discovery (auto-registration) on and off, rate limiting.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { AgentRegistry } from '../../proto/gen/bm/v1/agent_registry_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { MysqlAgentTokens } from '../../controller/agents/tokens.ts';
import { startControllerProcess, type ControllerProcess } from '../../controller/lab/index.ts';

let on: ControllerProcess;
let off: ControllerProcess;
let admin: RpcConnection;
let db: DbHandle;

const inventory = (macs: string[]) => ({
  cpu: { count: 32, model: 'Xeon Gold 6130', arch: 'x86_64', flags: ['vmx'] },
  memoryBytes: 256n * 1024n ** 3n,
  disks: [
    { name: 'sda', sizeBytes: 480n * 1024n ** 3n, model: 'SSD', serial: 'S1', wwn: '0x5000', rotational: false },
    { name: 'sdb', sizeBytes: 4000n * 1024n ** 3n, model: 'HDD', serial: 'S2', wwn: '0x5001', rotational: true },
  ],
  nics: macs.map((mac, i) => ({ name: `eth${i}`, mac, speedMbps: 10000, link: true })),
  dmi: { vendor: 'Dell Inc.', product: 'PowerEdge R640', serial: 'ABC123' },
  bootMode: 'uefi',
});

beforeAll(async () => {
  on = await startControllerProcess({ extraToml: '[discovery]\nenabled = true\ngroup = "rack9"\nrate_per_second = 0.001\nburst = 3' });
  off = await startControllerProcess();
  admin = connect(on.url, { metadata: { authorization: `Bearer ${on.token}` } });
  db = await openDatabase(on.databaseUrl, { connectionLimit: 2 });
  // Two start-ups of up to 30 s each: a hook that timed out first would leave a controller that became ready later running.
}, 90_000);

afterAll(async () => {
  admin?.close();
  await db?.close();
  await on?.stop();
  await off?.stop();
});

describe('agent registry', () => {
  it('registers an unknown machine in enroll with its ports and hardware, without any token', async () => {
    const agent = connect(on.url).client(AgentRegistry);
    const reg = await agent.register({ inventory: inventory(['52:54:00:d0:00:01', '52:54:00:d0:00:02']) });
    const node = await admin.client(NodeService).getNode({ id: reg.nodeUuid });
    expect(node.provisionState).toBe('enroll');
    expect(node.group).toBe('rack9');
    expect(node.cpus).toBe(32);
    expect(node.memoryMb).toBe(256 * 1024);
    expect(node.localGb).toBe(4000);
    expect(node.macs.sort()).toEqual(['52:54:00:d0:00:01', '52:54:00:d0:00:02']);
    expect(node.properties).toMatchObject({ discovered: 'true', vendor: 'Dell Inc.', boot_mode: 'uefi' });
    expect(node.pmPasswordSet).toBe(false);
  });

  it('refuses to register a machine one of whose MACs is already enrolled, without saying it is', async () => {
    const agent = connect(on.url).client(AgentRegistry);
    await expect(agent.register({ inventory: inventory(['52:54:00:d0:00:09', '52:54:00:d0:00:02']) })).rejects.toMatchObject({
      code: status.UNAUTHENTICATED,
    });
  });

  it('rate-limits registration', async () => {
    const agent = connect(on.url).client(AgentRegistry);
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await agent.register({ inventory: inventory([`52:54:00:d1:00:0${i}`]) }).then(
        () => 0,
        (e: { code: number }) => e.code,
      );
      codes.push(r);
    }
    expect(codes).toContain(status.RESOURCE_EXHAUSTED);
  });

  it('refuses registration when discovery is off', async () => {
    const agent = connect(off.url).client(AgentRegistry);
    await expect(agent.register({ inventory: inventory(['52:54:00:d2:00:01']) })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/discovery is off/),
    });
  });

  it('answers Lookup and Heartbeat only with the node operation token, refusing forged and revoked ones', async () => {
    const node = await admin.client(NodeService).createNode({
      pmAddress: '192.0.2.1',
      pmUser: 'a',
      pmPassword: 'p',
      cpus: 1,
      memoryMb: 1,
      localGb: 1,
      cpuArch: 'x86_64',
      mac: '52:54:00:d3:00:01',
    });
    const tokens = new MysqlAgentTokens(db.db);
    const token = await tokens.issue(node.uuid, 60_000);
    const withToken = connect(on.url, { metadata: { authorization: `Bearer ${token}` } }).client(AgentRegistry);
    const forged = connect(on.url, { metadata: { authorization: 'Bearer bma_forged' } }).client(AgentRegistry);
    const none = connect(on.url).client(AgentRegistry);

    const found = await withToken.lookup({ macs: ['52-54-00-D3-00-01'] });
    expect(found).toMatchObject({ nodeUuid: node.uuid, provisionState: 'enroll', action: 'wait' });
    await expect(forged.lookup({ macs: ['52:54:00:d3:00:01'] })).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
    await expect(none.lookup({ macs: ['52:54:00:d3:00:01'] })).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
    // An unknown MAC gets exactly what a wrong token gets: nobody learns which MACs are enrolled.
    const unknown = await none.lookup({ macs: ['52:54:00:ff:ff:fe'] }).catch((e: { code: number; details: string }) => e);
    const wrong = await forged.lookup({ macs: ['52:54:00:d3:00:01'] }).catch((e: { code: number; details: string }) => e);
    expect(unknown).toMatchObject({ code: status.UNAUTHENTICATED, details: (wrong as { details: string }).details });
    // A Lookup names a handful of MACs, not a fleet's worth.
    await expect(withToken.lookup({ macs: Array.from({ length: 9 }, (_, i) => `52:54:00:d3:01:0${i}`) })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/at most 8/),
    });
    // The admin token is not an agent token.
    await expect(
      connect(on.url, { metadata: { authorization: `Bearer ${on.token}` } })
        .client(AgentRegistry)
        .lookup({ macs: ['52:54:00:d3:00:01'] }),
    ).rejects.toMatchObject({ code: status.UNAUTHENTICATED });

    expect((await withToken.heartbeat({ nodeUuid: node.uuid, agentAddress: '127.0.0.1:9999' })).action).toBe('wait');
    await expect(forged.heartbeat({ nodeUuid: node.uuid, agentAddress: '127.0.0.1:9999' })).rejects.toMatchObject({
      code: status.UNAUTHENTICATED,
    });
    // The address a deploy will stream to must be the agent's own: where the heartbeat came from (or its lease).
    for (const foreign of ['169.254.169.254:80', 'evil.example.com:99', '127.0.0.1:99999', '10.1.2.3:9999']) {
      await expect(withToken.heartbeat({ nodeUuid: node.uuid, agentAddress: foreign })).rejects.toMatchObject({
        code: expect.toBeOneOf([status.INVALID_ARGUMENT, status.PERMISSION_DENIED]),
      });
    }
    const [row] = (
      await db.pool.query<import('mysql2/promise').RowDataPacket[]>('SELECT agent_address FROM nodes WHERE uuid = ?', [node.uuid])
    )[0];
    expect(row?.agent_address).toBe('127.0.0.1:9999');

    await tokens.revoke(node.uuid);
    await expect(withToken.lookup({ macs: ['52:54:00:d3:00:01'] })).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
    const expired = await tokens.issue(node.uuid, -1);
    await expect(
      connect(on.url, { metadata: { authorization: `Bearer ${expired}` } })
        .client(AgentRegistry)
        .lookup({ macs: ['52:54:00:d3:00:01'] }),
    ).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
  });

  it('refuses malformed input with the field named', async () => {
    const agent = connect(on.url).client(AgentRegistry);
    await expect(agent.lookup({ macs: [] })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^macs: /),
    });
    await expect(agent.lookup({ macs: ['nope'] })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    await expect(agent.heartbeat({ nodeUuid: 'x', agentAddress: '1.2.3.4:5' })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^node_uuid: /),
    });
  });
});
