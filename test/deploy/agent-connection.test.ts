/**
 * The controller's calls to one agent share one HTTP/2 connection: unary
 * calls and the WriteImage stream (with its flow control) go through the
 * project's rpc adapter over the same channel. Counted on the wire, with a
 * TCP forwarder in front of the real agent process.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connectAgent, type AgentConnection } from '../../controller/deploy/agent-client.ts';
import { AgentLink } from '../../controller/deploy/agent-link.ts';
import { deployImage } from '../../controller/deploy/deploy.ts';
import { DeployStreamError } from '../../controller/deploy/errors.ts';
import { streamImage } from '../../controller/deploy/stream.ts';
import { DEFAULT_TUNING } from '../../controller/deploy/tuning.ts';
import type { Extent, ImageSource } from '../../controller/images/extents.ts';
import { openImageFile, type OpenedImage } from '../../controller/images/open.ts';
import { startAgentProcess, type AgentProcess } from '../../controller/lab/index.ts';
import { DigestAlgorithm } from '../../proto/digest/block-sha256.ts';
import { startCountingProxy, type CountingProxy } from '../support/counting-proxy.ts';

const MIB = 1024 * 1024;
const TOKEN = `bma_${randomBytes(24).toString('base64url')}`;
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  readonly agent: AgentProcess;
  readonly proxy: CountingProxy;
  readonly disk: string;
  readonly image: OpenedImage;
  readonly bytes: Buffer;
}

async function setUp(imageBytes: number): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'bm-agent-conn-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const disk = join(dir, 'disk');
  await writeFile(disk, '');
  await truncate(disk, 64 * MIB);
  const bytes = randomBytes(imageBytes);
  const imagePath = join(dir, 'image.raw');
  await writeFile(imagePath, bytes);
  const agent = await startAgentProcess({ token: TOKEN, target: disk, targetZeroed: true });
  cleanups.push(() => agent.stop());
  const proxy = await startCountingProxy(agent.port);
  cleanups.push(() => proxy.close());
  const image = await openImageFile(imagePath, 'raw', { chunkSize: MIB });
  cleanups.push(() => image.close());
  return { agent, proxy, disk, image, bytes };
}

function connection(address: string): AgentConnection {
  const conn = connectAgent(address, TOKEN);
  cleanups.push(() => conn.close());
  return conn;
}

describe("the controller's connection to an agent", () => {
  it('carries unary calls and the image stream over one HTTP/2 connection', async () => {
    const { proxy, disk, image, bytes } = await setUp(24 * MIB);
    const agent = connection(proxy.address);
    const inventory = await agent.client.getInventory({});
    expect(inventory).toBeDefined();
    // Smaller buffers than the default, so the stream's flow control is exercised while it runs.
    const tuning = { ...DEFAULT_TUNING, commitIntervalBytes: 4 * MIB, maxUncommittedBytes: 6 * MIB, maxBufferedBytes: 2 * MIB };
    const result = await streamImage(agent, image.source, {
      nodeUuid: 'node-one-conn',
      resumeOffset: 0,
      checkpoint: async () => {
        // A unary call in the middle of the stream shares the connection too.
        await agent.client.getInventory({});
      },
      expected: { algorithm: DigestAlgorithm.sha256, hex: sha256(bytes) },
      tuning,
    });
    expect(result.sha256).toBe(sha256(bytes));
    expect(result.committedOffset).toBe(bytes.length);
    const drive = await agent.client.writeConfigDrive({ metaDataJson: '{"uuid":"node-one-conn"}', networkDataJson: '{}' });
    expect(Number(drive.offset)).toBeGreaterThanOrEqual(bytes.length);
    expect(sha256((await readFile(disk)).subarray(0, bytes.length))).toBe(sha256(bytes));
    expect(proxy.connections()).toBe(1);
  });

  it('deploys through deployImage and writes the config drive after it over one connection', async () => {
    const { proxy, disk, image, bytes } = await setUp(16 * MIB);
    const link = new AgentLink(proxy.address, TOKEN);
    cleanups.push(() => link.close());
    const result = await deployImage({
      nodeUuid: 'node-one-conn-deploy',
      agentAddress: proxy.address,
      agentToken: TOKEN,
      link,
      source: image.source,
      expected: { algorithm: DigestAlgorithm.sha256, hex: sha256(bytes) },
      checkpoint: async () => undefined,
    });
    expect(result.attempts).toBe(1);
    // The deploy leaves the operation's connection open for what follows.
    const drive = await link.call((agent) =>
      agent.client.writeConfigDrive({ metaDataJson: '{"uuid":"node-one-conn"}', networkDataJson: '{}' }),
    );
    expect(Number(drive.offset)).toBeGreaterThanOrEqual(bytes.length);
    expect(sha256((await readFile(disk)).subarray(0, bytes.length))).toBe(sha256(bytes));
    expect(proxy.connections()).toBe(1);
    expect(link.dials).toBe(1);
  });

  it('resumes a stream that broke on a live connection over that same connection', async () => {
    const { proxy, disk, image, bytes } = await setUp(16 * MIB);
    const real = image.source;
    let broken = false;
    // The first stream fails on the controller's side half-way (its image source gives up); the connection stays up.
    const breaksOnce: ImageSource = {
      format: real.format,
      virtualSize: real.virtualSize,
      async *extents(from?: number): AsyncIterable<Extent> {
        for await (const extent of real.extents(from)) {
          if (!broken && extent.offset >= 8 * MIB) {
            broken = true;
            throw new DeployStreamError('the image source hiccuped', { node: 'node-live-conn' });
          }
          yield extent;
        }
      },
    };
    const tuning = { ...DEFAULT_TUNING, commitIntervalBytes: 2 * MIB, maxUncommittedBytes: 3 * MIB, maxBufferedBytes: 2 * MIB };
    const result = await deployImage({
      nodeUuid: 'node-live-conn',
      agentAddress: proxy.address,
      agentToken: TOKEN,
      source: breaksOnce,
      expected: { algorithm: DigestAlgorithm.sha256, hex: sha256(bytes) },
      checkpoint: async () => undefined,
      tuning,
      retryDelayMs: 20,
    });
    expect(broken).toBe(true);
    expect(result.attempts).toBe(2);
    expect(result.startOffsets[1]).toBeGreaterThan(0);
    expect(sha256((await readFile(disk)).subarray(0, bytes.length))).toBe(sha256(bytes));
    expect(proxy.connections()).toBe(1);
  });

  it('dials again only once the connection itself broke, and resumes from the checkpoint', async () => {
    const { proxy, disk, image, bytes } = await setUp(24 * MIB);
    const link = new AgentLink(proxy.address, TOKEN);
    cleanups.push(() => link.close());
    const tuning = { ...DEFAULT_TUNING, commitIntervalBytes: 2 * MIB, maxUncommittedBytes: 3 * MIB, maxBufferedBytes: 2 * MIB };
    let brokeAt: number | undefined;
    const result = await deployImage({
      nodeUuid: 'node-broken-conn',
      agentAddress: proxy.address,
      agentToken: TOKEN,
      link,
      source: image.source,
      expected: { algorithm: DigestAlgorithm.sha256, hex: sha256(bytes) },
      tuning,
      retryDelayMs: 50,
      checkpoint: async (offset) => {
        if (brokeAt === undefined && offset >= 8 * MIB) {
          brokeAt = offset;
          proxy.breakConnections();
        }
      },
    });
    expect(brokeAt).toBeDefined();
    expect(result.attempts).toBe(2);
    expect(result.startOffsets).toEqual([0, brokeAt]);
    await link.call((agent) => agent.client.writeConfigDrive({ metaDataJson: '{"uuid":"node-one-conn"}', networkDataJson: '{}' }));
    expect(sha256((await readFile(disk)).subarray(0, bytes.length))).toBe(sha256(bytes));
    // The first connection until it broke, then one more for the resumed stream and the config drive.
    expect(proxy.connections()).toBe(2);
    expect(link.dials).toBe(2);
  });
});
