/**
 * The fleet under chaos (issue 16): three controllers of one cluster, 30
 * virtual machines, 20 boots at once. One controller is killed (SIGKILL)
 * mid-stream: its peers take its deploys over and all 20 reach ACTIVE, each
 * machine holding one instance and the image's bytes, and no resume
 * re-sent more than one commit interval (the agents' own counters).
 * Then, with a fourth controller in, one is stopped (SIGTERM) during 20 more
 * boots: no deploy fails. Each deploy runs on its node's hash-ring owner, so
 * the controller stopped is whichever streams first (never ctl-c, which
 * serves the machines' network boot).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceService, type Instance } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { agentStreamCounters, sha256OfFilePrefix, type AgentStreamCounters } from '../../controller/lab/index.ts';
import { DEFAULT_TUNING } from '../../controller/deploy/tuning.ts';
import { ChaosCluster, type ClusterImage } from './fleet-cluster.ts';

const MIB = 1024 * 1024;
/** Two commit intervals of data: a stream broken in its second half resumes from a checkpoint. */
const IMAGE_BYTES = 144 * MIB;
const MACHINES = 30;
const BOOTS = 20;
const COMMIT = DEFAULT_TUNING.commitIntervalBytes;
const log: string[] = [];
let cluster: ChaosCluster;
let image: ClusterImage;

beforeAll(async () => {
  cluster = new ChaosCluster({ name: 'fleet', deadAfterS: 3, heartbeatMs: 500, say: (m) => log.push(m) });
  // ctl-c serves the machines' network boot and is never stopped (see fleet-cluster.ts).
  await cluster.start('ctl-c');
  await cluster.addController('ctl-a');
  await cluster.addController('ctl-b');
  image = await cluster.uploadImage('ctl-c', 'chaos', IMAGE_BYTES);
  await cluster.addMachines('ctl-c', MACHINES, IMAGE_BYTES + 64 * MIB);
}, 900_000);

afterAll(async () => {
  await cluster?.stop();
});

function why(instances: readonly Instance[]): string {
  const bad = instances.filter((i) => i.state !== 'ACTIVE').map((i) => `${i.name}: ${i.state} ${i.nodeProvisionState} ${i.lastError}`);
  const logs = [...cluster.controllers.entries()].map(([id, c]) => `--- ${id}\n${c.logs().slice(-3000)}`);
  return [...bad, ...logs, ...log.slice(-50)].join('\n');
}

/** Each instance on a machine of its own, named by the node, with the image's bytes on the disk; the agents' counters. */
async function checkFleet(via: string, instances: readonly Instance[]): Promise<Map<string, AgentStreamCounters>> {
  expect(new Set(instances.map((i) => i.nodeUuid)).size).toBe(instances.length);
  const all = (await cluster.api(via).client(InstanceService).listInstances({})).instances;
  for (const i of instances) {
    // No second instance (a duplicate deploy by the new owner) landed on the node.
    expect(all.filter((x) => x.nodeUuid === i.nodeUuid && x.state !== 'DELETED').map((x) => x.uuid)).toEqual([i.uuid]);
    expect((await cluster.api(via).client(NodeService).getNode({ id: i.nodeUuid })).instanceUuid).toBe(i.uuid);
  }
  const counters = new Map<string, AgentStreamCounters>();
  for (const i of instances) {
    const m = await cluster.machineOf(via, i.nodeUuid);
    expect(await sha256OfFilePrefix(m.disk, IMAGE_BYTES), `${m.o.name}'s disk`).toBe(image.sha256);
    // The deploy ramdisk's agent: the last one the machine ran (it then booted from its disk).
    // Summed over its finished writes: when the controller died after the agent finished but before it recorded
    // that, the new owner's stream is accepted at the image's end, receives nothing, and the agent counts it anew.
    const finished = agentStreamCounters(m.agentsRun.at(-1)?.output() ?? '');
    expect(finished.length, `${m.o.name}: its agent logged no finished write`).toBeGreaterThan(0);
    counters.set(
      i.nodeUuid,
      finished.reduce((sum, c) => ({
        streams: sum.streams + c.streams,
        bytesReceived: sum.bytesReceived + c.bytesReceived,
        bytesResent: sum.bytesResent + c.bytesResent,
      })),
    );
  }
  return counters;
}

describe('a fleet of three controllers', () => {
  it('brings all 20 boots to ACTIVE when a controller is killed mid-stream, re-sending at most one commit interval per resume', async () => {
    const since = performance.now();
    const vms = await cluster.boot(['ctl-a', 'ctl-b', 'ctl-c'], 'kill', BOOTS, image.name);
    const victim = await cluster
      .midStream(['ctl-a', 'ctl-b'], since, { streams: 2, committed: COMMIT, imageBytes: IMAGE_BYTES, timeoutMs: 600_000 })
      .catch((e: Error) => {
        throw new Error(`${e.message}\n${log.join('\n')}`);
      });
    const orphans = cluster.streamingOn(victim, since);
    await cluster.kill(victim);
    const survivors = [...cluster.controllers.keys()];

    const done = await cluster.settle(
      'ctl-c',
      vms.map((v) => v.uuid),
      600_000,
    );
    expect(
      done.every((i) => i.state === 'ACTIVE'),
      why(done),
    ).toBe(true);
    const counters = await checkFleet('ctl-c', done);

    // Every deploy the dead controller was streaming was finished by a peer, from a checkpoint or the agent's own commit.
    expect(orphans.size).toBeGreaterThanOrEqual(2);
    for (const node of orphans) {
      const finisher = cluster.events.find((e) => e.at >= since && e.nodeUuid === node && e.type === 'instance.active');
      expect(survivors).toContain(finisher?.controllerId);
    }
    // The same agents carried on: a second stream to each that had received bytes before the kill.
    const resumed = [...orphans].filter((node) => counters.get(node)!.streams >= 2);
    expect(resumed.length, JSON.stringify(Object.fromEntries(counters))).toBeGreaterThan(0);
    for (const [node, c] of counters) {
      // Every disk already hashed right (checkFleet); the counters say what it cost. Received minus re-sent is not
      // held against the image's size: once in CI it came to 109 of 126 MiB on a disk that hashed right (the re-sent
      // count can include bytes its own count never saw, e.g. across a reset of the count), so it is no proof of loss.
      expect(c.bytesReceived, `node ${node}: ${JSON.stringify(c)}`).toBeGreaterThanOrEqual(image.dataBytes);
      // Each resume re-sends at most what its stream had received past the last commit: one interval per interruption.
      // A relay's follower can be interrupted more than once (its relay dies, then the controller it fell back to).
      expect(c.bytesResent, `node ${node}: ${JSON.stringify(c)}`).toBeLessThanOrEqual(COMMIT * Math.max(1, c.streams - 1));
    }
    // One line for the CI log: how much the takeover cost.
    console.info(
      `kill -9 ${victim}: ${orphans.size} deploys taken over, ${resumed.length} mid-stream; MiB re-sent each: ${[...orphans].map((n) => (counters.get(n)!.bytesResent / MIB).toFixed(1)).join(' ')}`,
    );
  }, 1_500_000);

  it('fails no deploy of 20 when a controller is stopped (SIGTERM) mid-stream', async () => {
    const first = (await cluster.api('ctl-c').client(InstanceService).listInstances({})).instances.filter((i) =>
      i.name.startsWith('kill-'),
    );
    expect(first.length).toBe(BOOTS);
    await cluster.deleteAll(
      'ctl-c',
      first.map((i) => i.uuid),
      600_000,
    );
    await cluster.addController('ctl-d');
    const candidates = [...cluster.controllers.keys()].filter((id) => id !== 'ctl-c');

    const since = performance.now();
    const vms = await cluster.boot([...cluster.controllers.keys()], 'term', BOOTS, image.name);
    const stopped = await cluster
      .midStream(candidates, since, { streams: 2, committed: COMMIT, imageBytes: IMAGE_BYTES, timeoutMs: 600_000 })
      .catch((e: Error) => {
        throw new Error(`${e.message}\n${log.join('\n')}`);
      });
    const handed = cluster.streamingOn(stopped, since);
    // A rolling restart: the controller checkpoints, lets go of its nodes and exits cleanly.
    expect(await cluster.terminate(stopped)).toBe(0);
    const survivors = [...cluster.controllers.keys()];

    const done = await cluster.settle(
      'ctl-c',
      vms.map((v) => v.uuid),
      600_000,
    );
    expect(
      done.filter((i) => i.state !== 'ACTIVE'),
      why(done),
    ).toEqual([]);
    const counters = await checkFleet('ctl-c', done);
    expect(handed.size).toBeGreaterThanOrEqual(2);
    for (const node of handed) {
      const finisher = cluster.events.find((e) => e.at >= since && e.nodeUuid === node && e.type === 'instance.active');
      expect(survivors).toContain(finisher?.controllerId);
    }
    for (const [node, c] of counters) expect(c.bytesResent, `node ${node}: ${JSON.stringify(c)}`).toBeLessThanOrEqual(COMMIT);
    console.info(
      `SIGTERM ${stopped}: ${handed.size} deploys handed over; MiB re-sent each: ${[...handed].map((n) => (counters.get(n)!.bytesResent / MIB).toFixed(1)).join(' ')}`,
    );
  }, 1_500_000);
});
