/**
 * Controllers on a 3-node NATS cluster (three local nats-server processes
 * with routes and JetStream, `[nats] url` listing all three): restarting the
 * server the node's owner is connected to loses neither the event stream
 * (a watch through the other controller's API) nor forwarding; both resume
 * through the remaining servers while it is down, and go on once it is back.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashRing } from '../../controller/cluster/hash-ring.ts';
import { type ControllerProcess, startControllerProcess, uniqueDatabaseUrl, uniqueNatsPrefix } from '../../controller/lab/index.ts';
import { ClusterService } from '../../proto/gen/bm/v1/cluster_pb.js';
import { EventService, type Event } from '../../proto/gen/bm/v1/event_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { type NatsCluster, startNatsCluster } from '../support/nats-cluster.ts';

let nats: NatsCluster | undefined;
let a: ControllerProcess | undefined;
let b: ControllerProcess | undefined;
const conns: RpcConnection[] = [];
const watch = new AbortController();
const events: Event[] = [];

async function waitFor(what: string, ok: () => boolean | Promise<boolean>, ms = 20_000): Promise<number> {
  const started = Date.now();
  while (!(await ok())) {
    if (Date.now() - started > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - started;
}

beforeAll(async () => {
  nats = await startNatsCluster();
  await waitFor('the NATS routes', async () => (await Promise.all(nats!.names.map((n) => nats!.routes(n)))).every((r) => r === 2));
  const databaseUrl = uniqueDatabaseUrl('bm_natsc');
  const natsPrefix = uniqueNatsPrefix();
  const env = { BM_SECRETS_KEY: randomBytes(32).toString('base64'), BM_NATS_URL: nats.url };
  const toml = (id: string): string =>
    ['[controller]', `id = "${id}"`, 'heartbeat_interval_ms = 300', 'dead_after_s = 60', 'forward_timeout_ms = 1500'].join('\n');
  a = await startControllerProcess({ databaseUrl, natsPrefix, env, logLevel: 'info', extraToml: toml('nc-a') });
  b = await startControllerProcess({ databaseUrl, natsPrefix, env, logLevel: 'info', extraToml: toml('nc-b') });
}, 120_000);

afterAll(async () => {
  watch.abort();
  for (const c of conns) c.close();
  await b?.stop({ keepDatabase: true });
  await a?.stop();
  await nats?.close();
});

describe('controllers on a 3-node NATS cluster', () => {
  it('keep events and forwarding through a restart of the NATS server the owner is connected to', async () => {
    const apiA = connect(a!.url, { metadata: { authorization: `Bearer ${a!.token}` } });
    conns.push(apiA);
    expect(a!.logs()).toContain(nats!.url);
    await waitFor('both members alive', async () => {
      const list = await apiA.client(ClusterService).listControllers({});
      return list.controllers.filter((c) => c.alive).length === 2;
    });
    const ring = new HashRing(['nc-a', 'nc-b']);
    let node = '';
    for (let i = 0; node === ''; i++) {
      const made = await apiA.client(NodeService).createNode({
        name: `natsc-${i}`,
        pmAddress: `fake-natsc-${i}`,
        pmUser: 'admin',
        pmPassword: 'natsc-bmc-secret',
        powerDriver: 'fake',
        cpus: 2,
        memoryMb: 2048,
        localGb: 10,
        cpuArch: 'x86_64',
        mac: `52:54:00:fb:00:${i.toString(16).padStart(2, '0')}`,
      });
      if (ring.owner(made.uuid) === 'nc-b') node = made.uuid;
    }

    // The watch runs through a's API for the whole test; b publishes the power events.
    void (async () => {
      for await (const e of apiA.client(EventService).watch({ nodeUuid: node }, { signal: watch.signal })) events.push(e);
    })().catch(() => undefined);
    const powerEvent = (state: string, after: number): Event | undefined =>
      events.find(
        (e) =>
          e.type === 'power.changed' &&
          e.powerState === state &&
          e.controllerId === 'nc-b' &&
          Number(e.time?.seconds ?? 0n) * 1000 >= after - 1000,
      );
    // The watch is live once an event comes through it.
    await waitFor('the watch to see a first event', async () => {
      await apiA.client(NodeService).setPowerState({ id: node, target: 'on' });
      return powerEvent('on', 0) !== undefined;
    });

    const down = await nats!.serverOf('bm-controller nc-b');
    expect(down, 'nc-b is connected to one of the three servers').not.toBeNull();
    const aWasOn = await nats!.serverOf('bm-controller nc-a');
    await nats!.stop(down!);
    const stoppedAt = Date.now();

    // While it is down: the same forwarded action, retried as a client would, until the owner answers again.
    let attempts = 0;
    let lastError = '';
    const resumeMs = await waitFor(
      'forwarding to resume',
      async () => {
        attempts++;
        return apiA
          .client(NodeService)
          .setPowerState({ id: node, target: 'off' })
          .then(
            (n) => n.powerState === 'off',
            (err: unknown) => {
              lastError = err instanceof Error ? err.message : String(err);
              return false;
            },
          );
      },
      30_000,
    );
    await waitFor('the power-off event through the watch', () => powerEvent('off', stoppedAt) !== undefined);
    expect(await nats!.serverOf('bm-controller nc-b')).not.toBe(down);
    expect(b!.logs()).toMatch(/ran a forwarded action[^\n]*"power-set"|"power-set"[^\n]*ran a forwarded action/);

    // Back in the cluster: every server routes to both others again, and events and forwards still flow.
    await nats!.start(down!);
    await waitFor('the restarted server to rejoin', async () => (await nats!.routes(down!)) === 2);
    const backAt = Date.now();
    const on = await apiA.client(NodeService).setPowerState({ id: node, target: 'on' });
    expect(on.powerState).toBe('on');
    await waitFor('the power-on event after the restart', () => powerEvent('on', backAt) !== undefined);
    console.log(
      JSON.stringify({
        restarted: down,
        ownerWasOn: down,
        receiverWasOn: aWasOn,
        forwardingResumedMs: resumeMs,
        attempts,
        lastErrorWhileDown: lastError,
      }),
    );
  }, 120_000);
});
