/**
 * `npm run bench -- forward`: what forwarding an action to the node's owner
 * costs. Two controller processes of one cluster (database, NATS prefix,
 * secret key), nodes on the fake power driver; the same API call (power
 * status, a BMC read) sent to controller a, sequentially, for nodes a owns
 * (run locally: the peer) and for nodes b owns (forwarded over NATS), in the
 * same run, and the same nodes asked of b directly. Goal: the forward adds at
 * most 10 ms at p50 and 20 ms at p95 to the local path.
 */
import { randomBytes } from 'node:crypto';
import { HashRing } from '../../controller/cluster/hash-ring.ts';
import { startControllerProcess, uniqueDatabaseUrl, uniqueNatsPrefix, type ControllerProcess } from '../../controller/lab/index.ts';
import { ClusterService } from '../../proto/gen/bm/v1/cluster_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect } from '../../proto/rpc/index.ts';
import { goal, type Bench } from './harness.ts';

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const bench: Bench = async (ctx) => {
  const calls = Math.max(50, Math.round(400 * ctx.scale));
  const databaseUrl = uniqueDatabaseUrl('bm_bench_fwd');
  const natsPrefix = uniqueNatsPrefix();
  const env = { BM_SECRETS_KEY: randomBytes(32).toString('base64') };
  const toml = (id: string): string => ['[controller]', `id = "${id}"`, 'heartbeat_interval_ms = 500'].join('\n');
  let a: ControllerProcess | undefined;
  let b: ControllerProcess | undefined;
  try {
    a = await startControllerProcess({ databaseUrl, natsPrefix, env, logLevel: 'warn', extraToml: toml('bf-a') });
    b = await startControllerProcess({ databaseUrl, natsPrefix, env, logLevel: 'warn', extraToml: toml('bf-b') });
    const api = connect(a.url, { metadata: { authorization: `Bearer ${a.token}` } });
    const apiB = connect(b.url, { metadata: { authorization: `Bearer ${b.token}` } });
    try {
      const deadline = Date.now() + 20_000;
      while ((await api.client(ClusterService).listControllers({})).controllers.filter((c) => c.alive).length < 2) {
        if (Date.now() > deadline) throw new Error('the two controllers did not both show alive');
        await new Promise((r) => setTimeout(r, 100));
      }
      const ring = new HashRing(['bf-a', 'bf-b']);
      const owned: Record<'bf-a' | 'bf-b', string[]> = { 'bf-a': [], 'bf-b': [] };
      for (let i = 0; owned['bf-a'].length < 5 || owned['bf-b'].length < 5; i++) {
        const node = await api.client(NodeService).createNode({
          name: `bf-${i}`,
          pmAddress: `fake-bf-${i}`,
          pmUser: 'admin',
          pmPassword: 'bench-secret',
          powerDriver: 'fake',
          cpus: 1,
          memoryMb: 1024,
          localGb: 1,
          cpuArch: 'x86_64',
          mac: `52:54:00:fc:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
        });
        owned[ring.owner(node.uuid) as 'bf-a' | 'bf-b'].push(node.uuid);
      }
      const measure = async (nodes: readonly string[], via = api): Promise<number[]> => {
        const ms: number[] = [];
        for (let i = 0; i < calls; i++) {
          const started = performance.now();
          await via.client(NodeService).getPowerState({ id: nodes[i % nodes.length]! });
          ms.push(performance.now() - started);
        }
        return ms.sort((x, y) => x - y);
      };
      // Warm both paths (connections, JIT), then interleave the two series in halves so load shifts hit both.
      await measure(owned['bf-a'].slice(0, 1));
      await measure(owned['bf-b'].slice(0, 1));
      await measure(owned['bf-b'].slice(0, 1), apiB);
      const local1 = await measure(owned['bf-a']);
      const forwarded1 = await measure(owned['bf-b']);
      const atOwner1 = await measure(owned['bf-b'], apiB);
      const atOwner2 = await measure(owned['bf-b'], apiB);
      const forwarded2 = await measure(owned['bf-b']);
      const local2 = await measure(owned['bf-a']);
      const local = [...local1, ...local2].sort((x, y) => x - y);
      const forwarded = [...forwarded1, ...forwarded2].sort((x, y) => x - y);
      const atOwner = [...atOwner1, ...atOwner2].sort((x, y) => x - y);
      const round = (v: number): number => Math.round(v * 100) / 100;
      const results = {
        calls: local.length,
        localP50Ms: round(percentile(local, 50)),
        localP95Ms: round(percentile(local, 95)),
        sameNodesAskingTheOwnerP50Ms: round(percentile(atOwner, 50)),
        sameNodesAskingTheOwnerP95Ms: round(percentile(atOwner, 95)),
        forwardedP50Ms: round(percentile(forwarded, 50)),
        forwardedP95Ms: round(percentile(forwarded, 95)),
        overheadP50Ms: round(percentile(forwarded, 50) - percentile(local, 50)),
        overheadP95Ms: round(percentile(forwarded, 95) - percentile(local, 95)),
      };
      ctx.log(JSON.stringify(results));
      return {
        results,
        goals: [
          goal('forward overhead p50 (ms)', results.overheadP50Ms, '<=', 10),
          goal('forward overhead p95 (ms)', results.overheadP95Ms, '<=', 20),
        ],
      };
    } finally {
      api.close();
      apiB.close();
    }
  } finally {
    await b?.stop({ keepDatabase: true });
    await a?.stop();
  }
};

export default bench;
