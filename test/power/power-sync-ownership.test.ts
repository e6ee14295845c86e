/**
 * Power sync moves with ownership: two controller processes on one database
 * and NATS prefix poll disjoint shares of the fleet (each node by its owner
 * on the hash ring, together all of it), and when one stops, the other
 * polls every node. Read from each controller's own sweep report.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterService } from '../../proto/gen/bm/v1/cluster_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { startControllerProcess, uniqueDatabaseUrl, uniqueNatsPrefix, type ControllerProcess } from '../../controller/lab/index.ts';

const NODES = 12;
let a: ControllerProcess | undefined;
let b: ControllerProcess | undefined;
const conns: RpcConnection[] = [];

/** The node count of the last sweep this controller reported. */
function lastSweep(ctl: ControllerProcess): number | null {
  const lines = ctl
    .logs()
    .split('\n')
    .filter((l) => l.includes('"msg":"power sync sweep done"'));
  const last = lines.at(-1);
  return last ? (JSON.parse(last) as { nodes: number }).nodes : null;
}

async function until(what: string, ok: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}\n--- a\n${a?.logs().slice(-3000)}\n--- b\n${b?.logs().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  const databaseUrl = uniqueDatabaseUrl('bm_psync_own');
  const natsPrefix = uniqueNatsPrefix();
  const env = { BM_SECRETS_KEY: randomBytes(32).toString('base64') };
  const toml = (id: string) =>
    ['[controller]', `id = "${id}"`, 'heartbeat_interval_ms = 300', 'dead_after_s = 3', '[power]', 'sync_interval_s = 1'].join('\n');
  a = await startControllerProcess({ databaseUrl, natsPrefix, env, logLevel: 'debug', extraToml: toml('ps-a') });
  b = await startControllerProcess({ databaseUrl, natsPrefix, env, logLevel: 'debug', extraToml: toml('ps-b') });
  for (const c of [a, b]) conns.push(connect(c.url, { metadata: { authorization: `Bearer ${c.token}` } }));
});

afterAll(async () => {
  for (const c of conns) c.close();
  await b?.stop({ keepDatabase: true });
  await a?.stop();
});

describe('power sync with several controllers', () => {
  it('polls each node at its owner only, and moves the polling to the survivor when a controller stops', async () => {
    const nodes = conns[0]!.client(NodeService);
    const made: { uuid: string }[] = [];
    for (let i = 0; i < NODES; i++)
      made.push(
        await nodes.createNode({
          name: `psync-${i}`,
          pmAddress: `fake-psync-${i}`,
          pmUser: 'admin',
          pmPassword: 'psync-secret',
          powerDriver: 'fake',
          cpus: 1,
          memoryMb: 1,
          localGb: 1,
          cpuArch: 'x86_64',
          mac: `52:54:00:5e:00:${i.toString(16).padStart(2, '0')}`,
        }),
      );
    for (const n of made) await nodes.provision({ id: n.uuid, verb: 'manage' });
    await until(
      'every node manageable',
      async () => (await Promise.all(made.map((n) => nodes.getNode({ id: n.uuid })))).every((n) => n.provisionState === 'manageable'),
      60_000,
    );
    await until(
      'two live members',
      async () => (await conns[0]!.client(ClusterService).listControllers({})).controllers.filter((c) => c.alive).length === 2,
      30_000,
    );

    // Both have swept since: their shares add up to the fleet, and neither polls it all.
    await until(
      'sweeps that split the fleet',
      () => {
        const [na, nb] = [lastSweep(a!), lastSweep(b!)];
        return na !== null && nb !== null && na + nb === NODES && na < NODES && nb < NODES;
      },
      30_000,
    );

    // b stops (SIGTERM: it leaves the ring at once); a then polls every node.
    await b!.stop({ keepDatabase: true });
    b = undefined;
    await until('the survivor polling every node', () => lastSweep(a!) === NODES, 30_000);
  }, 180_000);
});
