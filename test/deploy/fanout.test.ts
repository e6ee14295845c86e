/**
 * Rack fan-out with real agent processes on loopback, each with its own
 * per-deploy token and a sparse file as its disk: deploys of one image feed
 * each other through relays (agent/server/relay-image.ts) as the controller's
 * planner (controller/deploy/fanout-planner.ts) lays them out; every agent
 * verifies its own digest and every disk must equal the image byte for byte.
 * A relay killed with SIGKILL mid-stream sends its followers back to the
 * controller, each from its own checkpoint.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectAgent, type AgentConnection } from '../../controller/deploy/agent-client.ts';
import { deployImage } from '../../controller/deploy/deploy.ts';
import type { ExpectedDigest } from '../../controller/deploy/digest.ts';
import { deployImageFanout, FANOUT_COMMIT_INTERVAL_BYTES, type FanoutDeployResult } from '../../controller/deploy/fanout-deploy.ts';
import { FanoutPlanner, fanoutImageKey } from '../../controller/deploy/fanout-planner.ts';
import { rawContentSha256 } from '../../controller/images/digest.ts';
import type { Extent, ImageSource } from '../../controller/images/extents.ts';
import { openImageFile, type OpenedImage } from '../../controller/images/open.ts';
import { startAgentProcess, type AgentProcess } from '../../controller/lab/index.ts';
import { BlockSha256, DigestAlgorithm } from '../../proto/digest/block-sha256.ts';
import { isServiceError } from '../../proto/rpc/index.ts';

const MIB = 1024 * 1024;
const token = (): string => `bma_${randomBytes(24).toString('base64url')}`;
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

let dir: string;
let imagePath: string;
let imageBytes: Buffer;
let expected: ExpectedDigest;
let imageDataBytes: number;
const started: AgentProcess[] = [];
const opened: OpenedImage[] = [];
const connections: AgentConnection[] = [];

interface Node {
  readonly uuid: string;
  readonly agent: AgentProcess;
  readonly token: string;
  readonly disk: string;
}

async function node(name: string): Promise<Node> {
  const disk = join(dir, `${name}.disk`);
  await writeFile(disk, '');
  await truncate(disk, imageBytes.length + 8 * MIB);
  const secret = token();
  const agent = await startAgentProcess({ token: secret, target: disk, targetZeroed: true });
  started.push(agent);
  return { uuid: `node-${name}`, agent, token: secret, disk };
}

async function source(): Promise<ImageSource> {
  const image = await openImageFile(imagePath, 'raw', { chunkSize: MIB });
  opened.push(image);
  return image.source;
}

/** The image at about `bytesPerSecond`, so that a test can act while streams are half-way. */
function throttled(real: ImageSource, bytesPerSecond: number): ImageSource {
  return {
    format: real.format,
    virtualSize: real.virtualSize,
    async *extents(from?: number): AsyncIterable<Extent> {
      for await (const extent of real.extents(from)) {
        if (extent.kind === 'data') await new Promise((resolve) => setTimeout(resolve, (extent.data.length / bytesPerSecond) * 1000));
        yield extent;
      }
    },
  };
}

async function diskMatches(disk: string): Promise<boolean> {
  return sha256((await readFile(disk)).subarray(0, imageBytes.length)) === sha256(imageBytes);
}

function deploy(
  planner: FanoutPlanner,
  target: Node,
  src: ImageSource,
  extra: { checkpoint?: (offset: number) => void; attempts?: number } = {},
): Promise<FanoutDeployResult> {
  return deployImageFanout({
    planner,
    imageKey: fanoutImageKey(expected, imageBytes.length),
    nodeUuid: target.uuid,
    agentAddress: target.agent.address,
    agentToken: target.token,
    source: src,
    expected,
    checkpoint: async (offset) => extra.checkpoint?.(offset),
    // Every commit, so the tests see the streams' progress (the flow checkpoints every 64 MiB).
    checkpointStepBytes: 0,
    retryDelayMs: 100,
    ...(extra.attempts ? { attempts: extra.attempts } : {}),
  });
}

async function until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bm-fanout-'));
  // 40 MiB of random data with holes (at the start, unaligned in the middle, a tail): relays must forward holes as holes.
  const size = 40 * MIB;
  imageBytes = randomBytes(size);
  imageBytes.fill(0, 0, 64 * 1024);
  imageBytes.fill(0, 9 * MIB + 4096, 15 * MIB + 8192);
  imageBytes.fill(0, 36 * MIB);
  imagePath = join(dir, 'image.raw');
  await writeFile(imagePath, imageBytes);
  const blocks = new BlockSha256();
  blocks.update(imageBytes);
  expected = { algorithm: DigestAlgorithm.blocks, hex: blocks.digest() };
  imageDataBytes = (await rawContentSha256(await source())).dataBytes;
  expect(imageDataBytes).toBe(size - 64 * 1024 - (6 * MIB + 4096) - 4 * MIB);
});

afterEach(async () => {
  for (const conn of connections.splice(0)) conn.close();
  await Promise.all(started.splice(0).map((agent) => agent.stop()));
  await Promise.all(opened.splice(0).map((o) => o.close()));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('rack fan-out', () => {
  it('deploys one image to four agents through a chain of relays: the controller sends it once, every disk matches', async () => {
    const planner = new FanoutPlanner({ fanout: 1 });
    const nodes = await Promise.all(['chain-a', 'chain-b', 'chain-c', 'chain-d'].map(node));
    // Joined in order (the planner is synchronous): a is fed by the controller, b by a, c by b, d by c.
    const sources = await Promise.all(nodes.map(() => source()));
    const results = await Promise.all(nodes.map((n, i) => deploy(planner, n, sources[i]!)));
    expect(results.map((r) => r.relayedBy)).toEqual([undefined, 'node-chain-a', 'node-chain-b', 'node-chain-c']);
    for (const r of results) {
      expect(r.sha256).toBe(expected.hex);
      expect(r.fellBack).toBe(false);
    }
    // Holes travel as lengths: the controller sent the image's data bytes once, and no more.
    expect(results.reduce((sum, r) => sum + r.dataBytesSent, 0)).toBe(imageDataBytes);
    for (const n of nodes) expect(await diskMatches(n.disk)).toBe(true);
    // Each relay used its follower's own token and never wrote it down.
    for (const [i, n] of nodes.entries()) {
      if (i < 3) expect(n.agent.output()).toContain('relay finished');
      for (const other of nodes) expect(n.agent.output()).not.toContain(other.token);
    }
    expect(planner.streaming(fanoutImageKey(expected, imageBytes.length))).toBe(0);
  }, 60_000);

  it('lets a deploy that starts late join the tree and read the blocks its relay committed before it came', async () => {
    const planner = new FanoutPlanner({ fanout: 2 });
    const [a, b, c, late] = await Promise.all(['tree-a', 'tree-b', 'tree-c', 'tree-late'].map(node));
    let rootCommitted = 0;
    const src = throttled(await source(), 20 * MIB);
    const first = [
      deploy(planner, a!, src, { checkpoint: (offset) => (rootCommitted = offset) }),
      deploy(planner, b!, await source()),
      deploy(planner, c!, await source()),
    ];
    await until(() => rootCommitted >= 24 * MIB, 'the root to commit 24 MiB');
    // a's two slots are taken (b, c): the late one goes one level down, behind b.
    const lateResult = await deploy(planner, late!, await source());
    const results = await Promise.all(first);
    expect(results.map((r) => r.relayedBy)).toEqual([undefined, 'node-tree-a', 'node-tree-a']);
    expect(lateResult.relayedBy).toBe('node-tree-b');
    expect(lateResult.fellBack).toBe(false);
    for (const r of [...results, lateResult]) expect(r.sha256).toBe(expected.hex);
    expect([...results, lateResult].reduce((sum, r) => sum + r.dataBytesSent, 0)).toBe(imageDataBytes);
    for (const n of [a!, b!, c!, late!]) expect(await diskMatches(n.disk)).toBe(true);
  }, 60_000);

  it('after a relay is killed with SIGKILL mid-stream, both its followers finish from the controller at their own checkpoints', async () => {
    const planner = new FanoutPlanner({ fanout: 2 });
    const [a, b, c, d, e] = await Promise.all(['kill-a', 'kill-b', 'kill-c', 'kill-d', 'kill-e'].map(node));
    const committed = new Map<string, number[]>();
    const track = (n: Node) => ({
      checkpoint: (offset: number) => committed.set(n.uuid, [...(committed.get(n.uuid) ?? []), offset]),
    });
    const last = (n: Node): number => committed.get(n.uuid)?.at(-1) ?? 0;
    const rootDeploy = deploy(planner, a!, throttled(await source(), 20 * MIB));
    // b's own deploy ends when its agent dies, if it is still running then (one attempt: nothing to resume to).
    const relayDeploy = deploy(planner, b!, await source(), { attempts: 1 }).then(
      () => 'finished',
      (error: unknown) => error,
    );
    const sibling = deploy(planner, c!, await source(), track(c!));
    const followers = [deploy(planner, d!, await source(), track(d!)), deploy(planner, e!, await source(), track(e!))];
    await until(
      () => last(d!) >= 2 * FANOUT_COMMIT_INTERVAL_BYTES && last(e!) >= 2 * FANOUT_COMMIT_INTERVAL_BYTES,
      'both followers of b to commit two intervals',
    );
    const killedAt = Math.min(last(d!), last(e!));
    await b!.agent.kill();

    for (const [n, result] of [
      [d!, await followers[0]!],
      [e!, await followers[1]!],
    ] as const) {
      expect(result.relayedBy).toBe('node-kill-b');
      expect(result.fellBack).toBe(true);
      // The controller resumed it where its own checkpoint was, not at 0: it sent only the rest.
      expect(result.relayedCommittedOffset).toBeGreaterThanOrEqual(killedAt);
      expect(result.startOffsets).toEqual([0, result.relayedCommittedOffset]);
      expect(result.dataBytesSent).toBeLessThan(imageDataBytes - 8 * MIB);
      expect(result.sha256).toBe(expected.hex);
      expect(last(n)).toBe(imageBytes.length);
      expect(await diskMatches(n.disk)).toBe(true);
    }
    // b's sibling hangs off a, which lives: it never noticed.
    const siblingResult = await sibling;
    expect(siblingResult).toMatchObject({ relayedBy: 'node-kill-a', fellBack: false, sha256: expected.hex, dataBytesSent: 0 });
    expect(await diskMatches(c!.disk)).toBe(true);
    const root = await rootDeploy;
    expect(root.sha256).toBe(expected.hex);
    expect(await diskMatches(a!.disk)).toBe(true);
    // b's own deploy ended with its agent, or had finished before the kill: its followers trail it, and on a
    // loaded host far enough that b was done (seen once in a clean-clone run); then its disk is whole.
    const relayOutcome = await relayDeploy;
    if (relayOutcome === 'finished') expect(await diskMatches(b!.disk)).toBe(true);
    else expect(relayOutcome).toBeInstanceOf(Error);
    // What left the controller: the root's image and the two remainders, under two images.
    const sent = root.dataBytesSent + (await followers[0]!).dataBytesSent + (await followers[1]!).dataBytesSent;
    expect(sent).toBeLessThan(2 * imageDataBytes);
  }, 90_000);

  it("keeps a relay's own followers on it when the relay falls back to the controller (its feed survives the switch)", async () => {
    const planner = new FanoutPlanner({ fanout: 1 });
    const [a, b, c, d] = await Promise.all(['switch-a', 'switch-b', 'switch-c', 'switch-d'].map(node));
    let cCommitted = 0;
    const rootDeploy = deploy(planner, a!, throttled(await source(), 20 * MIB));
    const bDeploy = deploy(planner, b!, await source(), { attempts: 1 }).then(
      () => 'finished',
      (error: unknown) => error,
    );
    const cDeploy = deploy(planner, c!, await source(), { checkpoint: (offset) => (cCommitted = offset) });
    const dDeploy = deploy(planner, d!, await source());
    await until(() => cCommitted >= FANOUT_COMMIT_INTERVAL_BYTES, 'c to commit an interval');
    await b!.agent.kill();
    const [cResult, dResult, root] = await Promise.all([cDeploy, dDeploy, rootDeploy]);
    // c lost its relay and the controller fed it from its checkpoint; d stayed behind c throughout.
    expect(cResult).toMatchObject({ relayedBy: 'node-switch-b', fellBack: true, sha256: expected.hex });
    expect(cResult.startOffsets[1]).toBeGreaterThanOrEqual(FANOUT_COMMIT_INTERVAL_BYTES);
    expect(dResult).toMatchObject({ relayedBy: 'node-switch-c', fellBack: false, sha256: expected.hex, dataBytesSent: 0 });
    expect(root.sha256).toBe(expected.hex);
    for (const n of [a!, c!, d!]) expect(await diskMatches(n.disk)).toBe(true);
    expect(await bDeploy).not.toBe('finished');
  }, 90_000);

  it("passes on a follower's refusal with the follower's own status and address (a wrong follower token)", async () => {
    const [relay, follower] = await Promise.all(['refusal-relay', 'refusal-follower'].map(node));
    await deployImage({
      nodeUuid: relay!.uuid,
      agentAddress: relay!.agent.address,
      agentToken: relay!.token,
      source: await source(),
      expected,
      imageId: 'refusal-image',
      checkpoint: async () => undefined,
    });
    const conn = connectAgent(relay!.agent.address, relay!.token);
    connections.push(conn);
    const wrongToken = token();
    const error = await (async () => {
      for await (const _ of conn.client.relayImage({
        followerAddress: follower!.agent.address,
        followerToken: wrongToken,
        start: { imageSize: BigInt(imageBytes.length), imageId: 'refusal-image', digestAlgorithm: expected.algorithm },
      }));
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isServiceError(error) && error.code).toBe(status.FAILED_PRECONDITION);
    expect(isServiceError(error) && error.details).toContain(`follower ${follower!.agent.address}`);
    // The follower's own words (its UNAUTHENTICATED), without the token.
    expect(isServiceError(error) && error.details).toMatch(/invalid agent token/);
    expect(isServiceError(error) && error.details).not.toContain(wrongToken);
    expect(relay!.agent.output()).toMatch(/relay stopped/);
    expect(relay!.agent.output()).not.toContain(wrongToken);
    // Nothing reached the follower's disk.
    expect((await readFile(follower!.disk)).subarray(0, imageBytes.length).every((b) => b === 0)).toBe(true);
  }, 60_000);

  it('refuses to relay an image other than the one the agent writes, and the deploy then falls back to the controller', async () => {
    const [idle, follower] = await Promise.all(['idle', 'refused'].map(node));
    // idle writes another image (same bytes, another id): a relay serves only the image it was asked for.
    await deployImage({
      nodeUuid: idle!.uuid,
      agentAddress: idle!.agent.address,
      agentToken: idle!.token,
      source: await source(),
      expected,
      imageId: 'another-image',
      checkpoint: async () => undefined,
    });
    const conn = connectAgent(idle!.agent.address, idle!.token);
    connections.push(conn);
    const call = (async () => {
      for await (const _ of conn.client.relayImage({
        followerAddress: follower!.agent.address,
        followerToken: follower!.token,
        start: { imageSize: BigInt(imageBytes.length), imageId: 'not-this-one' },
      }));
    })();
    const error = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isServiceError(error) && error.code).toBe(status.FAILED_PRECONDITION);

    // A planner that believes `idle` is a relay of this image (it joined and never streamed).
    const planner = new FanoutPlanner({ fanout: 1 });
    planner.join({
      nodeUuid: idle!.uuid,
      imageKey: fanoutImageKey(expected, imageBytes.length),
      agentAddress: idle!.agent.address,
      agentToken: idle!.token,
    });
    const fallbacks: string[] = [];
    const checkpoints: number[] = [];
    const result = await deployImageFanout({
      planner,
      imageKey: fanoutImageKey(expected, imageBytes.length),
      nodeUuid: follower!.uuid,
      agentAddress: follower!.agent.address,
      agentToken: follower!.token,
      source: await source(),
      expected,
      checkpoint: async (offset) => {
        checkpoints.push(offset);
      },
      onFallback: (relay) => fallbacks.push(relay.nodeUuid),
    });
    expect(fallbacks).toEqual([idle!.uuid]);
    expect(result).toMatchObject({ fellBack: true, sha256: expected.hex, startOffsets: [0, 0] });
    // The stream committed every 8 MiB; the caller's checkpoint (a database write in the flow) ran every 64 MiB: here only at the end.
    expect(checkpoints).toEqual([imageBytes.length]);
    expect(await diskMatches(follower!.disk)).toBe(true);
  }, 60_000);
});
