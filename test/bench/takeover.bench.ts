/**
 * Takeover under load (issue 16): N deploys (20 at full scale) of one image
 * through controller A of a two-controller cluster, once left alone and once
 * with A killed (SIGKILL) mid-stream, in the same run. Reported: the time
 * from the kill to the new owner resuming each in-flight deploy (p50/p95,
 * from its `deploy.resumed` events on NATS), the offsets it resumed from, and
 * the total time of the N deploys with and without the kill. The dead-after
 * interval is the default 30 s.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { connect as connectNats } from '@nats-io/transport-node';
import { EventSchema } from '../../proto/gen/bm/v1/event_pb.js';
import { FlavorService } from '../../proto/gen/bm/v1/flavor_pb.js';
import { InstanceService, type Instance } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import {
  loopbackBootToml,
  type ControllerProcess,
  VirtualNode,
  freePort,
  freeUdpPort,
  natsUrl,
  runBmctl,
  startControllerProcess,
  uniqueDatabaseUrl,
  uniqueNatsPrefix,
} from '../../controller/lab/index.ts';
import { DEFAULT_TUNING } from '../../controller/deploy/tuning.ts';
import { goal, type BenchContext, type BenchReport } from './harness.ts';

const MIB = 1024 * 1024;
const DEAD_AFTER_S = 30;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function toml(dir: string, id: string, httpPort: number, tftpPort: number): Promise<string> {
  return [
    '[controller]',
    `id = "${id}"`,
    `dead_after_s = ${DEAD_AFTER_S}`,
    '[conductor]',
    'callback_timeout_s = 600',
    'poll_ms = 500',
    await loopbackBootToml({ dir, httpPort, tftpPort }),
  ].join('\n');
}

async function waitAll(api: RpcConnection, ids: readonly string[], ms: number): Promise<Instance[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const all = await Promise.all(ids.map((id) => api.client(InstanceService).getInstance({ id })));
    if (all.every((i) => i.state !== 'BUILD') || Date.now() > deadline) return all;
    await new Promise((r) => setTimeout(r, 250));
  }
}

export default async function takeoverBench(ctx: BenchContext): Promise<BenchReport> {
  const count = Math.max(2, Math.round(20 * ctx.scale));
  const imageBytes = Math.max(32, Math.round(256 * ctx.scale)) * MIB;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bm-takeover-bench-'));
  const machines: VirtualNode[] = [];
  const controllers: ControllerProcess[] = [];
  const conns: RpcConnection[] = [];
  const nc = await connectNats({ servers: natsUrl });
  try {
    await mkdir(path.join(dir, 'images'), { recursive: true });
    const env = { BM_SECRETS_KEY: randomBytes(32).toString('base64'), BM_IMAGES_STORE_PATH: path.join(dir, 'images') };
    const databaseUrl = uniqueDatabaseUrl('bm_takeover_bench');
    const natsPrefix = uniqueNatsPrefix();
    const httpA = await freePort();
    const a = await startControllerProcess({
      databaseUrl,
      env,
      natsPrefix,
      logLevel: 'warn',
      extraToml: await toml(dir, 'ctl-a', httpA, await freeUdpPort()),
    });
    controllers.push(a);
    const b = await startControllerProcess({
      databaseUrl,
      env,
      natsPrefix,
      logLevel: 'warn',
      extraToml: await toml(dir, 'ctl-b', await freePort(), await freeUdpPort()),
    });
    controllers.push(b);
    const apiA = connect(a.url, { metadata: { authorization: `Bearer ${a.token}` } });
    const apiB = connect(b.url, { metadata: { authorization: `Bearer ${b.token}` } });
    conns.push(apiA, apiB);

    const raw = path.join(dir, 'image.raw');
    const handle = await open(raw, 'w');
    await handle.truncate(imageBytes * 2);
    for (let off = 0; off < imageBytes * 2; off += 2 * MIB) await handle.write(randomBytes(MIB), 0, MIB, off);
    await handle.close();
    const up = await runBmctl(
      ['image', 'create', raw, '--name', 'tk', '--disk-format', 'raw'],
      { BM_URL: a.url, BM_TOKEN: a.token },
      600_000,
    );
    if (up.code !== 0) throw new Error(`image upload: ${up.stderr}`);

    // Two pools of machines (resource classes), one per round, so no round waits for the other's cleaning.
    ctx.log(`enrolling and cleaning ${2 * count} machines`);
    const nodes = apiA.client(NodeService);
    for (let i = 0; i < 2 * count; i++) {
      const name = `tk-${String(i).padStart(3, '0')}`;
      const m = new VirtualNode({
        name,
        mac: `52:54:03:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`,
        bmcPassword: `tk-${i}-secret`,
        diskBytes: imageBytes * 2 + 128 * MIB,
        dir: path.join(dir, name),
        bootUrl: `http://127.0.0.1:${httpA}`,
        say: (msg) => (/failed/.test(msg) ? ctx.log(msg) : undefined),
      });
      await m.start();
      machines.push(m);
      await nodes.createNode({
        name,
        pmAddress: m.bmc.address,
        pmPort: m.bmc.port,
        pmUser: 'admin',
        pmPassword: m.o.bmcPassword,
        cpus: 2,
        memoryMb: 2048,
        localGb: 1,
        cpuArch: 'x86_64',
        mac: m.o.mac,
        resourceClass: i < count ? 'r1' : 'r2',
      });
    }
    for (const verb of ['manage', 'provide'] as const) {
      await Promise.all(machines.map((m) => nodes.provision({ id: m.o.name, verb })));
      const want = verb === 'manage' ? 'manageable' : 'available';
      for (const deadline = Date.now() + 900_000; ; ) {
        const states = await Promise.all(machines.map((m) => nodes.getNode({ id: m.o.name }).then((n) => n.provisionState)));
        if (states.every((s) => s === want)) break;
        if (Date.now() > deadline) throw new Error(`${verb}: machines in ${[...new Set(states)].join(', ')}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    const flavors = apiA.client(FlavorService);
    await flavors.createFlavor({ name: 'r1', ramMb: 1024, diskGb: 1, cpus: 1, resourceClass: 'r1' });
    await flavors.createFlavor({ name: 'r2', ramMb: 1024, diskGb: 1, cpus: 1, resourceClass: 'r2' });

    ctx.log(`round 1: ${count} deploys through ctl-a, left alone`);
    const t0 = performance.now();
    const first = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        apiA.client(InstanceService).createInstance({ name: `calm-${i}`, flavor: 'r1', image: 'tk' }),
      ),
    );
    const calm = await waitAll(
      apiA,
      first.map((i) => i.uuid),
      1_800_000,
    );
    const calmS = (performance.now() - t0) / 1000;

    ctx.log(`round 2: ${count} deploys through ctl-a, which is killed mid-stream`);
    const resumed = new Map<string, { at: number; from: number }>();
    const sub = nc.subscribe(`${natsPrefix}.events.node.*`);
    void (async () => {
      for await (const msg of sub) {
        const e = fromBinary(EventSchema, msg.data);
        if (e.type === 'deploy.resumed' && e.controllerId === 'ctl-b')
          resumed.set(e.nodeUuid, { at: performance.now(), from: Number(e.details.from ?? 0) });
      }
    })();
    await nc.flush();
    const t1 = performance.now();
    const second = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        apiA.client(InstanceService).createInstance({ name: `storm-${i}`, flavor: 'r2', image: 'tk' }),
      ),
    );
    for (const deadline = Date.now() + 600_000; Date.now() < deadline; ) {
      const progress = await Promise.all(
        second.map((i) =>
          apiB
            .client(InstanceService)
            .getInstance({ id: i.uuid })
            .then((x) => x.progress),
        ),
      );
      if (progress.some((p) => p >= 10)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const inFlight = (await Promise.all(second.map((i) => apiB.client(InstanceService).getInstance({ id: i.uuid })))).filter(
      (i) => i.state === 'BUILD',
    );
    const killedAt = performance.now();
    process.kill(a.pid, 'SIGKILL');
    const stormy = await waitAll(
      apiB,
      second.map((i) => i.uuid),
      1_800_000,
    );
    const stormS = (performance.now() - t1) / 1000;
    sub.unsubscribe();

    const resumeS = inFlight
      .map((i) => resumed.get(i.nodeUuid))
      .filter((r) => r !== undefined)
      .map((r) => (r.at - killedAt) / 1000)
      .sort((x, y) => x - y);
    const failed = [...calm, ...stormy].filter((i) => i.state !== 'ACTIVE').length;
    const ratio = stormS / calmS;
    const froms = [...resumed.values()].map((r) => r.from);
    return {
      results: {
        deploys_per_round: count,
        image_data_mib: imageBytes / MIB,
        dead_after_s: DEAD_AFTER_S,
        without_kill_s: Math.round(calmS * 10) / 10,
        with_kill_s: Math.round(stormS * 10) / 10,
        with_vs_without: Math.round(ratio * 100) / 100,
        in_flight_at_kill: inFlight.length,
        resumed_by_peer: resumeS.length,
        resume_after_kill_p50_s: resumeS.length ? Math.round(percentile(resumeS, 50) * 10) / 10 : null,
        resume_after_kill_p95_s: resumeS.length ? Math.round(percentile(resumeS, 95) * 10) / 10 : null,
        resumed_from_offsets_mib: froms.map((f) => Math.round(f / MIB)),
        commit_interval_mib: DEFAULT_TUNING.commitIntervalBytes / MIB,
        failed,
      },
      goals: [
        goal(
          'resume p95 after kill -9 (s)',
          resumeS.length ? percentile(resumeS, 95) : null,
          '<=',
          40,
          resumeS.length ? undefined : 'no deploy was in flight and resumed',
        ),
        goal(
          'total with the kill / without',
          failed === 0 ? ratio : null,
          '<=',
          1.5,
          failed === 0 ? undefined : `${failed} deploys did not reach ACTIVE`,
        ),
        goal(
          'bytes re-sent per resumed deploy (commit intervals)',
          null,
          '<=',
          1,
          `a resume starts at the node's checkpoint (the last fdatasynced offset the agent acknowledged), so it re-sends at most what was sent past it: the sender's uncommitted window (${DEFAULT_TUNING.maxUncommittedBytes / MIB} MiB); the agent does not count received bytes yet, so it is not measured`,
        ),
      ],
    };
  } finally {
    for (const c of conns) c.close();
    await nc.close().catch(() => undefined);
    await Promise.all(machines.map((m) => m.stop().catch(() => undefined)));
    for (const c of controllers.reverse()) await c.stop({ keepDatabase: c !== controllers[controllers.length - 1] }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
