/**
 * The deploy path end to end on loopback: the controller's streamImage /
 * deployImage against the real agent process writing to sparse files, with
 * images made by the real qemu-img. Also the agent's other calls (config
 * drive read back with isoinfo, Erase, ReadImage, Reboot) and its token check.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentService } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { connect } from '../../proto/rpc/index.ts';
import { connectAgent, type AgentConnection } from '../../controller/deploy/agent-client.ts';
import { deployImage } from '../../controller/deploy/deploy.ts';
import { streamImage } from '../../controller/deploy/stream.ts';
import type { ExpectedDigest } from '../../controller/deploy/digest.ts';
import { DeployChecksumError } from '../../controller/deploy/errors.ts';
import { BlockSha256, DigestAlgorithm } from '../../proto/digest/block-sha256.ts';
import { BufferBudget } from '../../controller/deploy/buffer-budget.ts';
import { DEFAULT_TUNING, type StreamTuning } from '../../controller/deploy/tuning.ts';
import { rawContentSha256 } from '../../controller/images/digest.ts';
import type { Extent, ImageSource } from '../../controller/images/extents.ts';
import { openImageFile, type OpenedImage } from '../../controller/images/open.ts';
import { startAgentProcess, type AgentProcess } from '../../controller/lab/index.ts';

const run = promisify(execFile);
const MIB = 1024 * 1024;
const TOKEN = `bma_${randomBytes(24).toString('base64url')}`;

async function tool(command: string, args: readonly string[]): Promise<Buffer> {
  try {
    return (await run(command, args, { encoding: 'buffer', maxBuffer: 64 * MIB })).stdout;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new Error(`${command} is not installed: apt-get install qemu-utils genisoimage`, { cause: error });
    throw error;
  }
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const plain = (hex: string): ExpectedDigest => ({ algorithm: DigestAlgorithm.sha256, hex });
const blocks = (hex: string): ExpectedDigest => ({ algorithm: DigestAlgorithm.blocks, hex });

let dir: string;
let rawPath: string;
let rawSha: string;
let rawSize: number;
let rawDataBytes: number;
const started: AgentProcess[] = [];
const opened: OpenedImage[] = [];
const connections: AgentConnection[] = [];

async function agentOn(
  diskName: string,
  diskBytes: number,
  extra: { targetZeroed?: boolean; extraArgs?: string[]; port?: number } = {},
): Promise<{ agent: AgentProcess; disk: string }> {
  const disk = join(dir, diskName);
  await access(disk).catch(async () => {
    await writeFile(disk, '');
    await truncate(disk, diskBytes);
  });
  const agent = await startAgentProcess({
    token: TOKEN,
    target: disk,
    targetZeroed: extra.targetZeroed ?? true,
    ...(extra.extraArgs ? { extraArgs: extra.extraArgs } : {}),
    ...(extra.port ? { port: extra.port } : {}),
  });
  started.push(agent);
  return { agent, disk };
}

async function image(path: string, format: 'raw' | 'qcow2', chunkSize = MIB): Promise<OpenedImage> {
  const result = await openImageFile(path, format, { chunkSize });
  opened.push(result);
  return result;
}

function agentConnection(address: string, token = TOKEN): AgentConnection {
  const conn = connectAgent(address, token);
  connections.push(conn);
  return conn;
}

async function diskSha(disk: string, length: number): Promise<string> {
  return sha256((await readFile(disk)).subarray(0, length));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bm-deploy-'));
  // 16 MiB of random data with holes: at the start, in the middle (unaligned), and a tail.
  rawSize = 16 * MIB;
  const raw = randomBytes(rawSize);
  raw.fill(0, 0, 64 * 1024);
  raw.fill(0, 5 * MIB + 4096, 9 * MIB + 8192);
  raw.fill(0, 14 * MIB);
  rawPath = join(dir, 'image.raw');
  await writeFile(rawPath, raw);
  rawSha = sha256(raw);
  const digest = await rawContentSha256((await image(rawPath, 'raw')).source);
  rawDataBytes = digest.dataBytes;
  expect(digest.sha256).toBe(rawSha);
});

afterEach(async () => {
  for (const conn of connections.splice(0)) conn.close();
  await Promise.all(started.splice(0).map((agent) => agent.stop()));
});

afterAll(async () => {
  await Promise.all(opened.splice(0).map((o) => o.close()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('deploying images to an agent', () => {
  it('writes a raw image to a sparse file, streaming only its data, and the file matches the image', async () => {
    const { agent, disk } = await agentOn('raw.disk', 64 * MIB);
    const checkpoints: number[] = [];
    const result = await deployImage({
      nodeUuid: 'node-raw',
      agentAddress: agent.address,
      agentToken: TOKEN,
      source: (await image(rawPath, 'raw')).source,
      expected: plain(rawSha),
      checkpoint: async (offset) => {
        checkpoints.push(offset);
      },
    });
    expect(result).toMatchObject({ sha256: rawSha, attempts: 1, startOffsets: [0] });
    expect(result.dataBytesSent).toBe(rawDataBytes);
    expect(result.dataBytesSent).toBeLessThan(rawSize - 6 * MIB);
    expect(checkpoints.at(-1)).toBe(rawSize);
    expect(await diskSha(disk, rawSize)).toBe(rawSha);
  });

  it('keeps three concurrent streams within one shared buffer budget, and every disk matches the image', async () => {
    const budget = new BufferBudget(2 * MIB);
    const targets = await Promise.all(['budget-a.disk', 'budget-b.disk', 'budget-c.disk'].map((name) => agentOn(name, 64 * MIB)));
    const results = await Promise.all(
      targets.map(async ({ agent }, i) =>
        deployImage({
          nodeUuid: `node-budget-${i}`,
          agentAddress: agent.address,
          agentToken: TOKEN,
          source: (await image(rawPath, 'raw')).source,
          expected: plain(rawSha),
          checkpoint: async () => undefined,
          budget,
        }),
      ),
    );
    for (const r of results) expect(r.sha256).toBe(rawSha);
    for (const { disk } of targets) expect(await diskSha(disk, rawSize)).toBe(rawSha);
    // Three streams at their own 4 MiB bound would have held up to 12 MiB; the budget held them to 2.
    expect(budget.peakBytes).toBeGreaterThan(0);
    expect(budget.peakBytes).toBeLessThanOrEqual(2 * MIB);
    expect(budget.usedBytes).toBe(0);
  });

  it('writes qcow2 images made by qemu-img (plain and compressed) so the file matches qemu-img convert -O raw', async () => {
    const uncompressed = join(dir, 'image.qcow2');
    const compressed = join(dir, 'image-c.qcow2');
    await tool('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=65536', rawPath, uncompressed]);
    await tool('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'compat=0.10', rawPath, compressed]);
    for (const [name, path] of [
      ['plain', uncompressed],
      ['compressed', compressed],
    ] as const) {
      const reference = join(dir, `${name}.reference.raw`);
      await tool('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, reference]);
      const referenceBytes = await readFile(reference);
      const referenceSha = sha256(referenceBytes);
      // The deploy checks the 4 MiB block digest (the controller's default), taken here from qemu-img's output.
      const referenceBlocks = new BlockSha256();
      referenceBlocks.update(referenceBytes);
      const blockDigest = referenceBlocks.digest();
      const { agent, disk } = await agentOn(`${name}.disk`, 64 * MIB);
      const source = (await image(path, 'qcow2')).source;
      expect(source.virtualSize).toBe(rawSize);
      const result = await deployImage({
        nodeUuid: `node-${name}`,
        agentAddress: agent.address,
        agentToken: TOKEN,
        source,
        expected: blocks(blockDigest),
        checkpoint: async () => undefined,
      });
      expect(result.sha256).toBe(blockDigest);
      expect(await diskSha(disk, rawSize)).toBe(referenceSha);
    }
  }, 60_000);

  it('resumes from the checkpoint after the agent is killed mid-stream, re-sending at most the uncommitted window', async () => {
    const size = 32 * MIB;
    const bigPath = join(dir, 'big.raw');
    const big = randomBytes(size);
    await writeFile(bigPath, big);
    const bigSha = sha256(big);
    const bigBlocks = new BlockSha256();
    bigBlocks.update(big);
    const bigBlockDigest = bigBlocks.digest();
    let { agent, disk } = await agentOn('resume.disk', 64 * MIB);
    // Small intervals so that a 32 MiB image sees several commits.
    const tuning: StreamTuning = {
      ...DEFAULT_TUNING,
      chunkBytes: MIB,
      commitIntervalBytes: 4 * MIB,
      maxUncommittedBytes: 5 * MIB,
      maxBufferedBytes: 2 * MIB,
    };
    const checkpoints: number[] = [];
    let killedAt: number | undefined;
    const firstPid = agent.pid;
    const result = await deployImage({
      nodeUuid: 'node-resume',
      agentAddress: agent.address,
      agentToken: TOKEN,
      source: (await image(bigPath, 'raw', MIB)).source,
      // The block digest, read back after the resume over bytes two agent processes wrote.
      expected: blocks(bigBlockDigest),
      tuning,
      retryDelayMs: 100,
      checkpoint: async (offset) => {
        checkpoints.push(offset);
        if (killedAt === undefined && offset >= 8 * MIB) {
          killedAt = offset;
          const port = agent.port;
          await agent.kill();
          // The restarted agent knows nothing of the file's contents: no --target-zeroed.
          ({ agent } = await agentOn('resume.disk', 64 * MIB, { port, targetZeroed: false }));
        }
      },
    });
    expect(killedAt).toBeDefined();
    expect(agent.pid).not.toBe(firstPid);
    expect(result.attempts).toBe(2);
    expect(result.startOffsets).toEqual([0, killedAt]);
    expect(result.sha256).toBe(bigBlockDigest);
    expect(result.digestMethod).toBe('read-back');
    expect(await diskSha(disk, size)).toBe(bigSha);
    const resent = result.dataBytesSent - size;
    expect(resent).toBeGreaterThanOrEqual(0);
    expect(resent).toBeLessThanOrEqual(tuning.maxUncommittedBytes);
    expect(checkpoints.at(-1)).toBe(size);
  }, 60_000);

  it('lets a new stream (another controller taking over) supersede a stalled one and resume from its checkpoint', async () => {
    const size = 24 * MIB;
    const path = join(dir, 'takeover.raw');
    const bytes = randomBytes(size);
    await writeFile(path, bytes);
    const { agent, disk } = await agentOn('takeover.disk', 32 * MIB);
    const tuning: StreamTuning = {
      ...DEFAULT_TUNING,
      chunkBytes: MIB,
      commitIntervalBytes: 2 * MIB,
      maxUncommittedBytes: 3 * MIB,
      maxBufferedBytes: 2 * MIB,
    };
    const real = (await image(path, 'raw')).source;
    const stall = new AbortController();
    // The first controller's source stops producing half-way, as if its process hung: the stream stays open.
    const stalling: ImageSource = {
      format: real.format,
      virtualSize: real.virtualSize,
      async *extents(from?: number): AsyncIterable<Extent> {
        for await (const extent of real.extents(from)) {
          if (extent.offset >= 12 * MIB) {
            await new Promise((resolve) => stall.signal.addEventListener('abort', resolve, { once: true }));
            return;
          }
          yield extent;
        }
      },
    };
    const first = agentConnection(agent.address);
    const progress = { committedOffset: 0, dataBytesSent: 0, frames: 0 };
    const stalled = streamImage(
      first,
      stalling,
      {
        nodeUuid: 'node-takeover',
        resumeOffset: 0,
        checkpoint: async () => undefined,
        expected: plain(sha256(bytes)),
        tuning,
        signal: stall.signal,
      },
      progress,
    ).then(
      () => 'finished',
      (e: { code?: number }) => e.code ?? 'failed',
    );
    const deadline = Date.now() + 10_000;
    while (progress.committedOffset < 8 * MIB && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const checkpoint = progress.committedOffset;
    expect(checkpoint).toBeGreaterThanOrEqual(8 * MIB);

    const result = await deployImage({
      nodeUuid: 'node-takeover',
      agentAddress: agent.address,
      agentToken: TOKEN,
      source: real,
      expected: plain(sha256(bytes)),
      resumeOffset: checkpoint,
      checkpoint: async () => undefined,
      tuning,
    });
    expect(result.startOffsets).toEqual([checkpoint]);
    expect(result.sha256).toBe(sha256(bytes));
    expect(await diskSha(disk, size)).toBe(sha256(bytes));
    expect(agent.output()).toContain('superseding a running operation');
    // The superseded stream ended with ABORTED from the agent, not with a digest.
    stall.abort();
    expect(await stalled).toBe(status.ABORTED);
  });

  it('fails with a checksum error naming both digests when one byte of one frame is flipped', async () => {
    const { agent } = await agentOn('flip.disk', 64 * MIB);
    const real = (await image(rawPath, 'raw')).source;
    const flipping: ImageSource = {
      format: real.format,
      virtualSize: real.virtualSize,
      async *extents(from?: number): AsyncIterable<Extent> {
        let dataExtents = 0;
        for await (const extent of real.extents(from)) {
          if (extent.kind === 'data' && ++dataExtents === 3) {
            const copy = extent.data.slice();
            copy[100] = copy[100]! ^ 0x01;
            yield { kind: 'data', offset: extent.offset, data: copy };
          } else {
            yield extent;
          }
        }
      },
    };
    const attempt = deployImage({
      nodeUuid: 'node-flip',
      agentAddress: agent.address,
      agentToken: TOKEN,
      source: flipping,
      expected: plain(rawSha),
      checkpoint: async () => undefined,
    });
    const error = await attempt.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DeployChecksumError);
    const checksum = error as DeployChecksumError;
    expect(checksum.expected).toBe(rawSha);
    expect(checksum.actual).toMatch(/^[0-9a-f]{64}$/);
    expect(checksum.actual).not.toBe(rawSha);
    expect(checksum.message).toContain(rawSha);
    expect(checksum.message).toContain(checksum.actual);
  });
});

describe('the agent token', () => {
  it('refuses calls with a forged token or none (UNAUTHENTICATED), without echoing the token', async () => {
    const { agent } = await agentOn('auth.disk', 64 * MIB);
    const forgedToken = 'bma_forged_forged_forged_forged';
    const forged = agentConnection(agent.address, forgedToken);
    const none = connect(agent.address);
    try {
      const refused = await forged.client.getInventory({}).catch((e: unknown) => e as { code: number; details: string });
      expect(refused).toMatchObject({ code: status.UNAUTHENTICATED });
      expect(JSON.stringify(refused)).not.toContain(forgedToken);
      await expect(none.client(AgentService).erase({ mode: 'full' })).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
      // A forged token does not get a stream started either, and the deploy does not retry it.
      const deploy = deployImage({
        nodeUuid: 'node-auth',
        agentAddress: agent.address,
        agentToken: forgedToken,
        source: (await image(rawPath, 'raw')).source,
        expected: plain(rawSha),
        checkpoint: async () => undefined,
        retryDelayMs: 10,
      });
      await expect(deploy).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
      expect(agent.output()).not.toContain(forgedToken);
      expect(agent.output()).not.toContain(TOKEN);
      // The right token works.
      const inventory = await agentConnection(agent.address).client.getInventory({});
      expect(inventory.disks.map((d) => d.name)).toEqual(['vda']);
      expect(inventory.nics[0]?.mac).toBe('52:54:00:12:34:56');
    } finally {
      none.close();
    }
  });
});

describe('bad streams', () => {
  it('refuses a stream without start, frames with a gap, and an image larger than the disk, before writing', async () => {
    const { agent, disk } = await agentOn('bad.disk', 8 * MIB);
    const client = agentConnection(agent.address).client;
    const drain = async (frames: Parameters<typeof client.writeImage>[0]): Promise<unknown> => {
      try {
        for await (const ack of client.writeImage(frames)) void ack;
        return undefined;
      } catch (error) {
        return error;
      }
    };
    expect(await drain([{ offset: 0n, data: new Uint8Array(10) }])).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/first frame must carry start/),
    });
    expect(await drain([{ start: { imageSize: BigInt(MIB), digestAlgorithm: 'md5' } }])).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/unknown digest algorithm "md5"/),
    });
    expect(await drain([{ start: { imageSize: BigInt(16 * MIB) } }])).toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/does not fit/),
    });
    expect(await drain([{ start: { imageSize: BigInt(MIB) } }, { offset: 4096n, data: new Uint8Array(10).fill(1) }])).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/gap/),
    });
    expect(await drain([{ start: { imageSize: BigInt(MIB) } }, { offset: 0n, data: new Uint8Array(10).fill(1) }])).toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/incomplete/),
    });
    // Nothing but the last (in-order) frame reached the disk.
    const bytes = await readFile(disk);
    expect(bytes.subarray(10).every((b) => b === 0)).toBe(true);
  });
});

describe("the agent's other calls", () => {
  it('writes a config drive after the image that isoinfo reads, holding the expected JSON', async () => {
    const { agent, disk } = await agentOn('cd.disk', 64 * MIB);
    await deployImage({
      nodeUuid: 'node-cd',
      agentAddress: agent.address,
      agentToken: TOKEN,
      source: (await image(rawPath, 'raw')).source,
      expected: plain(rawSha),
      checkpoint: async () => undefined,
    });
    const metaData = {
      uuid: '0190a8c0-0000-7000-8000-000000000001',
      name: 'web-1',
      hostname: 'web-1',
      public_keys: { default: 'ssh-ed25519 AAAA test' },
    };
    const networkData = {
      links: [{ id: 'eth0', type: 'phy', ethernet_mac_address: '52:54:00:12:34:56' }],
      networks: [{ id: 'n0', link: 'eth0', type: 'ipv4_dhcp' }],
      services: [],
    };
    const userData = new TextEncoder().encode('#cloud-config\nhostname: web-1\n');
    const reply = await agentConnection(agent.address).client.writeConfigDrive({
      metaDataJson: JSON.stringify(metaData),
      networkDataJson: JSON.stringify(networkData),
      userData,
    });
    const offset = Number(reply.offset);
    const size = Number(reply.size);
    expect(offset).toBeGreaterThanOrEqual(rawSize);
    expect(offset + size).toBeLessThanOrEqual(64 * MIB);
    const bytes = await readFile(disk);
    // The image is untouched by the drive.
    expect(sha256(bytes.subarray(0, rawSize))).toBe(rawSha);
    const iso = join(dir, 'cd.iso');
    await writeFile(iso, bytes.subarray(offset, offset + size));
    const label = (await tool('isoinfo', ['-d', '-i', iso])).toString('utf8');
    expect(label).toMatch(/Volume id:\s+config-2/);
    const read = async (path: string): Promise<string> => (await tool('isoinfo', ['-i', iso, '-R', '-x', path])).toString('utf8');
    expect(JSON.parse(await read('/openstack/latest/meta_data.json'))).toEqual(metaData);
    expect(JSON.parse(await read('/openstack/latest/network_data.json'))).toEqual(networkData);
    expect(await read('/openstack/latest/user_data')).toBe('#cloud-config\nhostname: web-1\n');
  });

  it('reads the image back with ReadImage, and Erase zeroes the metadata regions or the whole target', async () => {
    const { agent, disk } = await agentOn('erase.disk', 64 * MIB);
    await deployImage({
      nodeUuid: 'node-erase',
      agentAddress: agent.address,
      agentToken: TOKEN,
      source: (await image(rawPath, 'raw')).source,
      expected: plain(rawSha),
      checkpoint: async () => undefined,
    });
    const client = agentConnection(agent.address).client;
    const readBack = createHash('sha256');
    let expectedOffset = 0n;
    for await (const chunk of client.readImage({ offset: 0n, length: 0n })) {
      expect(chunk.offset).toBe(expectedOffset);
      readBack.update(chunk.data);
      expectedOffset += BigInt(chunk.data.length);
    }
    expect(expectedOffset).toBe(BigInt(rawSize));
    expect(readBack.digest('hex')).toBe(rawSha);
    await expect(async () => {
      for await (const chunk of client.readImage({ offset: BigInt(63 * MIB), length: BigInt(2 * MIB) })) void chunk;
    }).rejects.toMatchObject({ code: status.OUT_OF_RANGE });

    const zeros = Buffer.alloc(MIB);
    await client.erase({ mode: 'metadata' });
    let bytes = await readFile(disk);
    expect(bytes.subarray(0, MIB).equals(zeros)).toBe(true);
    expect(bytes.subarray(63 * MIB).equals(zeros)).toBe(true);
    // Between the two erased MiB the image is still there.
    expect(bytes.subarray(MIB, 2 * MIB).equals(zeros)).toBe(false);

    await client.erase({ mode: 'full' });
    bytes = await readFile(disk);
    expect(bytes.length).toBe(64 * MIB);
    expect(bytes.every((b) => b === 0)).toBe(true);
    await expect(client.erase({ mode: 'shred' })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  });

  it('runs the configured command for an in-band Reboot after replying', async () => {
    const marker = join(dir, 'rebooted');
    const { agent } = await agentOn('reboot.disk', 8 * MIB, { extraArgs: ['--reboot-command', `touch ${marker}`] });
    await agentConnection(agent.address).client.reboot({});
    const deadline = Date.now() + 5000;
    while (
      Date.now() < deadline &&
      !(await access(marker).then(
        () => true,
        () => false,
      ))
    )
      await new Promise((r) => setTimeout(r, 50));
    await expect(access(marker)).resolves.toBeUndefined();
  });
});
