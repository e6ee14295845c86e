/**
 * A controller without [boot] still serves /metrics (API calls by method and
 * status), and every API mutation leaves one audit line at info naming who,
 * what and the result, never a secret.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { type ControllerProcess, freePort, startControllerProcess } from '../../controller/lab/index.ts';

let ctl: ControllerProcess;
let api: RpcConnection;
let metricsPort = 0;

beforeAll(async () => {
  metricsPort = await freePort();
  ctl = await startControllerProcess({ logLevel: 'info', extraToml: `[metrics]\nlisten = "127.0.0.1:${metricsPort}"` });
  api = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
}, 60_000);

afterAll(async () => {
  api?.close();
  await ctl?.stop();
});

describe('metrics and the audit trail', () => {
  it('counts API calls on /metrics without [boot], and audits each mutation without its secret', async () => {
    const nodes = api.client(NodeService);
    const node = await nodes.createNode({
      name: 'audited',
      pmAddress: 'fake-audit',
      pmUser: 'admin',
      pmPassword: 'audit-bmc-secret',
      powerDriver: 'fake',
      cpus: 1,
      memoryMb: 1,
      localGb: 1,
      cpuArch: 'x86_64',
      mac: '52:54:00:aa:00:01',
    });
    await nodes.getNode({ id: 'audited' });
    await expect(nodes.provision({ id: 'audited', verb: 'provide' })).rejects.toBeDefined();
    await nodes.setPowerState({ id: 'audited', target: 'on' });

    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toMatch(/^bm_api_calls_total\{method="NodeService\/CreateNode",code="OK"\} 1$/m);
    expect(text).toMatch(/^bm_api_calls_total\{method="NodeService\/Provision",code="FAILED_PRECONDITION"\} 1$/m);
    expect(text).toMatch(/^bm_api_call_seconds_count\{method="NodeService\/GetNode"\} 1$/m);

    await new Promise((r) => setTimeout(r, 300));
    const lines = ctl
      .logs()
      .split('\n')
      .filter((l) => l.includes('"audit":"api"'));
    const create = lines.find((l) => l.includes('NodeService/CreateNode'));
    expect(create).toBeDefined();
    expect(JSON.parse(create!)).toMatchObject({
      who: { project: 'admin', role: 'admin' },
      method: 'NodeService/CreateNode',
      target: 'audited',
      result: 'OK',
      tokenId: expect.stringMatching(/^[0-9a-f]{12}$/),
    });
    expect(lines.some((l) => l.includes('NodeService/Provision') && l.includes('FAILED_PRECONDITION'))).toBe(true);
    // Reads are not audited; the BMC action is, by the power conductor.
    expect(lines.some((l) => l.includes('NodeService/GetNode'))).toBe(false);
    expect(ctl.logs()).toMatch(/"audit":"bmc","node":"[0-9a-f-]{36}","action":"power on","result":"ok"/);
    expect(ctl.logs()).not.toContain('audit-bmc-secret');
    expect(ctl.logs()).not.toContain(ctl.token);
    expect(node.uuid).toMatch(/^[0-9a-f-]{36}$/);
  });
});
