/**
 * Any controller answers the API; an action on a node runs at the node's
 * owner. Three real controller processes of one cluster (one database, NATS
 * prefix and secret key) on the real NATS, nodes on the fake power driver:
 * what the owner ran shows in the owner's own log (its BMC audit lines and
 * "ran a forwarded action"), never in the receiver's; a typed refusal reads
 * the same through any controller; a paused (SIGSTOP) or killed owner makes
 * the caller's answer UNAVAILABLE naming the owner and its API address.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { HashRing } from '../../controller/cluster/hash-ring.ts';
import { ClusterService } from '../../proto/gen/bm/v1/cluster_pb.js';
import { InstanceService } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import {
  type ControllerProcess,
  runBmctl,
  startControllerProcess,
  uniqueDatabaseUrl,
  uniqueNatsPrefix,
} from '../../controller/lab/index.ts';

const IDS = ['fw-a', 'fw-b', 'fw-c'] as const;
type Id = (typeof IDS)[number];
const FORWARD_TIMEOUT_MS = 1500;
const ctl = new Map<Id, ControllerProcess>();
const api = new Map<Id, RpcConnection>();
const stopped = new Set<number>();
let db: DbHandle | undefined;
/** Node uuids by the controller the ring gives them to. */
const owned = new Map<Id, string[]>();
/** Available nodes of resource class "fwd", all owned by fw-b: whatever fw-a boots lands on fw-b's nodes. */
const deployable: string[] = [];
let dir = '';

function grpcError(err: unknown): { code: number; details: string } {
  const e = err as { code?: unknown; details?: unknown };
  if (typeof e.code !== 'number' || typeof e.details !== 'string') throw err;
  return { code: e.code, details: e.details };
}

/** Lines of a controller's JSON log that mention `text` (the node's uuid, say). */
function logLines(id: Id, ...texts: string[]): Record<string, unknown>[] {
  return ctl
    .get(id)!
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('{') && texts.every((t) => l.includes(t)))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Waits for exactly `count` such lines: a log line can reach us after the API's answer (another pipe). */
async function logged(id: Id, count: number, ...texts: string[]): Promise<void> {
  await waitFor(`${count} line(s) of ${id} with ${texts.join(' ')}`, () => logLines(id, ...texts).length === count, 5000).catch(
    (err: Error) => {
      throw new Error(`${err.message}; found ${logLines(id, ...texts).length}`);
    },
  );
}

async function waitFor(what: string, ok: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  const databaseUrl = uniqueDatabaseUrl('bm_forward');
  const natsPrefix = uniqueNatsPrefix();
  const env = { BM_SECRETS_KEY: randomBytes(32).toString('base64') };
  for (const id of IDS) {
    ctl.set(
      id,
      await startControllerProcess({
        databaseUrl,
        natsPrefix,
        env,
        logLevel: 'info',
        // A long dead_after: the paused owner must still be the ring's owner when the call is made.
        extraToml: [
          '[controller]',
          `id = "${id}"`,
          'heartbeat_interval_ms = 300',
          'dead_after_s = 60',
          `forward_timeout_ms = ${FORWARD_TIMEOUT_MS}`,
          '[power]',
          'settle_timeout_s = 2',
          // Deploys wait for an agent that never comes (fake BMCs): they stay in wait-callback on their owner.
          '[conductor]',
          'callback_timeout_s = 600',
          'poll_ms = 200',
        ].join('\n'),
      }),
    );
    api.set(id, connect(ctl.get(id)!.url, { metadata: { authorization: `Bearer ${ctl.get(id)!.token}` } }));
  }
  db = await openDatabase(databaseUrl, { connectionLimit: 2 });
  await waitFor('three live members', async () => {
    const list = await api.get('fw-a')!.client(ClusterService).listControllers({});
    return list.controllers.filter((c) => c.alive).length === 3;
  });
  // Twelve nodes, each with a BMC of its own on the fake driver (every process has its own fake BMCs).
  const ring = new HashRing([...IDS]);
  for (const id of IDS) owned.set(id, []);
  for (let i = 0; i < 12; i++) {
    const node = await api
      .get('fw-a')!
      .client(NodeService)
      .createNode({
        name: `fw-${i}`,
        pmAddress: `fake-fw-${i}`,
        pmUser: 'admin',
        pmPassword: 'fw-bmc-secret',
        powerDriver: 'fake',
        cpus: 2,
        memoryMb: 2048,
        localGb: 10,
        cpuArch: 'x86_64',
        mac: `52:54:00:fa:00:${i.toString(16).padStart(2, '0')}`,
      });
    owned.get(ring.owner(node.uuid) as Id)!.push(node.uuid);
  }
  for (const id of IDS) expect(owned.get(id)!.length, `the ring gives ${id} no node of 12`).toBeGreaterThan(0);

  // Two nodes of fw-b for instances, as cleaning leaves them (cleaning runs with real agents in other tests).
  for (let i = 0; deployable.length < 2; i++) {
    const node = await api
      .get('fw-a')!
      .client(NodeService)
      .createNode({
        name: `fwd-${i}`,
        pmAddress: `fake-fwd-${i}`,
        pmUser: 'admin',
        pmPassword: 'fw-bmc-secret',
        powerDriver: 'fake',
        cpus: 2,
        memoryMb: 2048,
        localGb: 10,
        cpuArch: 'x86_64',
        mac: `52:54:00:fa:01:${i.toString(16).padStart(2, '0')}`,
        resourceClass: 'fwd',
      });
    if (ring.owner(node.uuid) !== 'fw-b') continue;
    deployable.push(node.uuid);
    await db.pool.query("UPDATE nodes SET provision_state = 'available' WHERE uuid = ?", [node.uuid]);
  }
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-forward-'));
  const image = path.join(dir, 'tiny.raw');
  await writeFile(image, randomBytes(4096));
  await truncate(image, 1024 * 1024);
  const cli = { BM_URL: ctl.get('fw-a')!.url, BM_TOKEN: ctl.get('fw-a')!.token };
  expect((await runBmctl(['image', 'create', image, '--name', 'fw-image', '--disk-format', 'raw'], cli)).code).toBe(0);
  const flavor = await runBmctl(['flavor', 'create', 'fwd', '--ram', '1024', '--disk', '1', '--cpus', '1', '--resource-class', 'fwd'], cli);
  expect(flavor.code, flavor.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  for (const c of api.values()) c.close();
  await db?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  // fw-a drops the shared database, so it stops last.
  for (const [id, c] of [...ctl].reverse()) {
    if (stopped.has(c.pid)) continue;
    // A paused process would not see SIGTERM until continued.
    try {
      process.kill(c.pid, 'SIGCONT');
    } catch {}
    await c.stop({ keepDatabase: id !== 'fw-a' });
  }
});

describe('forwarding to the node owner', () => {
  it('runs a power change and a provision verb sent to a non-owner on the owner', async () => {
    const node = owned.get('fw-b')![0]!;
    const on = await api.get('fw-a')!.client(NodeService).setPowerState({ id: node, target: 'on' });
    expect(on.powerState).toBe('on');
    // The owner talked to the BMC; the receiver did not.
    await waitFor('the owner to log it', () => logLines('fw-b', node, 'ran a forwarded action').length === 1);
    await logged('fw-b', 1, node, '"audit":"bmc"', 'power on');
    await logged('fw-b', 1, node, 'ran a forwarded action', '"from":"fw-a"', 'power-set');
    expect(logLines('fw-a', node, '"audit":"bmc"')).toHaveLength(0);
    expect(logLines('fw-c', node, '"audit":"bmc"')).toHaveLength(0);
    // The receiver still audits the API call it answered.
    await logged('fw-a', 1, node, '"audit":"api"', 'SetPowerState');

    // manage: the owner's task takes the reservation and verifies the BMC; the answer comes from the receiver.
    const managed = await api.get('fw-c')!.client(NodeService).provision({ id: node, verb: 'manage' });
    expect(['verifying', 'manageable']).toContain(managed.provisionState);
    await waitFor(
      'manageable',
      async () => (await api.get('fw-c')!.client(NodeService).getNode({ id: node })).provisionState === 'manageable',
    );
    await waitFor('the owner to log the verify', () => logLines('fw-b', node, '"audit":"bmc"', 'verify (power status)').length === 1);
    await logged('fw-b', 1, node, 'ran a forwarded action', '"from":"fw-c"', 'provision');
    expect(logLines('fw-c', node, '"audit":"bmc"')).toHaveLength(0);

    // An action on the receiver's own node stays there.
    const mine = owned.get('fw-a')![0]!;
    await api.get('fw-a')!.client(NodeService).setPowerState({ id: mine, target: 'on' });
    await logged('fw-a', 1, mine, '"audit":"bmc"', 'power on');
    expect(logLines('fw-b', mine, 'forwarded')).toHaveLength(0);
    expect(logLines('fw-c', mine, 'forwarded')).toHaveLength(0);
  }, 60_000);

  it("answers the owner's refusal with the same code and message as the owner's own API", async () => {
    const node = owned.get('fw-b')![1] ?? owned.get('fw-b')![0]!;
    const [viaPeer, viaOwner] = await Promise.all(
      (['fw-a', 'fw-b'] as const).map((id) =>
        api
          .get(id)!
          .client(NodeService)
          .provision({ id: node, verb: 'deploy-now' })
          .then(
            () => null,
            (err: unknown) => grpcError(err),
          ),
      ),
    );
    expect(viaOwner?.code).toBe(status.INVALID_ARGUMENT);
    expect(viaPeer).toEqual(viaOwner);
    // A transition the state table refuses (provide from enroll) is decided by the owner too.
    const enrolled = owned.get('fw-c')![0]!;
    const refusals = await Promise.all(
      (['fw-a', 'fw-c'] as const).map((id) =>
        api
          .get(id)!
          .client(NodeService)
          .provision({ id: enrolled, verb: 'provide' })
          .then(
            () => null,
            (err: unknown) => grpcError(err),
          ),
      ),
    );
    expect(refusals[1]?.code).toBe(status.FAILED_PRECONDITION);
    expect(refusals[0]).toEqual(refusals[1]);
    await waitFor(
      'the owner to log the refusal',
      () => logLines('fw-c', enrolled, 'forwarded action failed', '"from":"fw-a"').length === 1,
    );
  }, 30_000);

  it('boots an instance through a non-owner: the owner deploys it, and a delete through a third controller cancels it there', async () => {
    const vm = await api.get('fw-a')!.client(InstanceService).createInstance({ name: 'fw-vm', flavor: 'fwd', image: 'fw-image' });
    expect(deployable).toContain(vm.nodeUuid);
    // The claim reserved the node for its owner, which runs the deploy (to wait-callback: no agent will come).
    await waitFor('the deploy to reach wait-callback', async () => {
      const [rows] = await db!.pool.query('SELECT provision_state, reservation FROM nodes WHERE uuid = ?', [vm.nodeUuid]);
      const row = (rows as { provision_state: string; reservation: string | null }[])[0];
      return row?.provision_state === 'wait-callback' && row.reservation === 'fw-b';
    });
    await waitFor('the owner to log the deploy', () => logLines('fw-b', vm.nodeUuid, 'ran a forwarded action', '"deploy"').length === 1);
    expect(logLines('fw-b', vm.nodeUuid, '"audit":"bmc"').length).toBeGreaterThan(0);
    expect(logLines('fw-a', vm.nodeUuid, '"audit":"bmc"')).toHaveLength(0);

    // Only the controller running the deploy can cancel it; the delete reaches it wherever it is sent.
    const deleted = await api.get('fw-c')!.client(InstanceService).deleteInstance({ id: vm.uuid });
    expect(deleted.uuid).toBe(vm.uuid);
    await waitFor('the owner to log the undeploy', () => logLines('fw-b', 'ran a forwarded action', '"undeploy"', vm.uuid).length === 1);
    await waitFor('the instance to be gone', async () =>
      api
        .get('fw-c')!
        .client(InstanceService)
        .getInstance({ id: vm.uuid })
        .then(
          () => false,
          (err: unknown) => grpcError(err).code === status.NOT_FOUND,
        ),
    );
    const node = await api.get('fw-a')!.client(NodeService).getNode({ id: vm.nodeUuid });
    expect(node.instanceUuid).toBe('');
    expect(['cleaning', 'available']).toContain(node.provisionState);
  }, 60_000);

  it('refuses a boot whose owner is paused with UNAVAILABLE naming it, and leaves no instance and no claimed node behind', async () => {
    const b = ctl.get('fw-b')!;
    const [before] = await db!.pool.query("SELECT uuid FROM nodes WHERE resource_class = 'fwd' AND provision_state = 'available'");
    expect((before as unknown[]).length).toBeGreaterThan(0);
    process.kill(b.pid, 'SIGSTOP');
    let err: { code: number; details: string } | null = null;
    try {
      err = await api
        .get('fw-a')!
        .client(InstanceService)
        .createInstance({ name: 'fw-vm-2', flavor: 'fwd', image: 'fw-image' })
        .then(
          () => null,
          (e: unknown) => grpcError(e),
        );
    } finally {
      process.kill(b.pid, 'SIGCONT');
    }
    expect(err?.code).toBe(status.UNAVAILABLE);
    expect(err?.details).toContain(`controller fw-b (API ${b.url})`);
    const [instances] = await db!.pool.query("SELECT uuid FROM instances WHERE name = 'fw-vm-2'");
    expect(instances).toEqual([]);
    const [after] = await db!.pool.query(
      "SELECT uuid FROM nodes WHERE resource_class = 'fwd' AND provision_state = 'available' AND reservation IS NULL AND instance_uuid IS NULL",
    );
    expect((after as unknown[]).length).toBe((before as unknown[]).length);
    await waitFor('the late deploy request dropped', () => logLines('fw-b', 'dropped a forwarded action', '"deploy"').length === 1);
  }, 60_000);

  it('answers UNAVAILABLE naming a paused owner, which then drops the late request instead of acting on it', async () => {
    const b = ctl.get('fw-b')!;
    const node = owned.get('fw-b')![0]!;
    const powerOffsBefore = logLines('fw-b', node, '"audit":"bmc"', 'power off').length;
    process.kill(b.pid, 'SIGSTOP');
    let err: { code: number; details: string } | null = null;
    const started = Date.now();
    try {
      err = await api
        .get('fw-a')!
        .client(NodeService)
        .setPowerState({ id: node, target: 'off' })
        .then(
          () => null,
          (e: unknown) => grpcError(e),
        );
    } finally {
      process.kill(b.pid, 'SIGCONT');
    }
    const took = Date.now() - started;
    expect(err?.code).toBe(status.UNAVAILABLE);
    expect(err?.details).toContain(`controller fw-b (API ${b.url})`);
    expect(err?.details).toMatch(/did not answer within 1500 ms/);
    expect(took).toBeGreaterThanOrEqual(FORWARD_TIMEOUT_MS - 100);
    expect(took).toBeLessThan(FORWARD_TIMEOUT_MS + 5000);
    // Woken up, the owner finds the request, says accepted to a caller that has gone, gets no go and leaves the node alone.
    await waitFor(
      'the late request dropped',
      () => logLines('fw-b', 'dropped a forwarded action its caller gave up on', node).length === 1,
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(logLines('fw-b', node, '"audit":"bmc"', 'power off')).toHaveLength(powerOffsBefore);
    // And it answers again.
    const again = await api.get('fw-a')!.client(NodeService).getPowerState({ id: node });
    expect(again.powerState).toBe('on');
  }, 60_000);

  it('answers UNAVAILABLE naming an owner killed before its heartbeat lapsed', async () => {
    const c = ctl.get('fw-c')!;
    const node = owned.get('fw-c')![0]!;
    process.kill(c.pid, 'SIGKILL');
    stopped.add(c.pid);
    await c.stop({ keepDatabase: true });
    const started = Date.now();
    const err = await api
      .get('fw-b')!
      .client(NodeService)
      .setPowerState({ id: node, target: 'on' })
      .then(
        () => null,
        (e: unknown) => grpcError(e),
      );
    expect(err?.code).toBe(status.UNAVAILABLE);
    expect(err?.details).toContain(`controller fw-c (API ${c.url})`);
    // NATS knows at once that nobody listens: no need to wait out the timeout.
    expect(err?.details).toMatch(/is not listening on NATS/);
    expect(Date.now() - started).toBeLessThan(FORWARD_TIMEOUT_MS);
    // bmctl says who did not answer, not that the controller it asked is unreachable.
    const cli = await runBmctl(['node', 'power', 'status', node], { BM_URL: ctl.get('fw-a')!.url, BM_TOKEN: ctl.get('fw-a')!.token });
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toContain(`controller fw-c (API ${c.url})`);
    expect(cli.stderr).not.toMatch(/cannot reach the controller/);
    // Its row is still alive (dead_after 60 s): the ring still names it, and nothing ran anywhere else.
    const [rows] = await db!.pool.query('SELECT id FROM controllers ORDER BY id');
    expect((rows as { id: string }[]).map((r) => r.id)).toEqual(['fw-a', 'fw-b', 'fw-c']);
    expect(logLines('fw-a', node, '"audit":"bmc"')).toHaveLength(0);
    expect(logLines('fw-b', node, '"audit":"bmc"')).toHaveLength(0);
  }, 30_000);
});
