/**
 * A takeover resumes from the checkpoint the dead controller last stored,
 * which may lag what the agent has made durable. The agent, told the image's
 * id, answers the new stream with its own committed offset (a broken
 * stream's writer commits what it wrote) and the sender continues there.
 * The agent's counters (its write-image log line) say how much was
 * received again.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAgent, type AgentConnection } from '../../controller/deploy/agent-client.ts';
import { deployImage } from '../../controller/deploy/deploy.ts';
import { streamImage } from '../../controller/deploy/stream.ts';
import { DEFAULT_TUNING, type StreamTuning } from '../../controller/deploy/tuning.ts';
import type { Extent, ImageSource } from '../../controller/images/extents.ts';
import { openImageFile, type OpenedImage } from '../../controller/images/open.ts';
import { agentStreamCounters, agentStreamStarts, startAgentProcess, type AgentProcess } from '../../controller/lab/index.ts';
import { DigestAlgorithm } from '../../proto/digest/block-sha256.ts';

const MIB = 1024 * 1024;
const TOKEN = `bma_${randomBytes(24).toString('base64url')}`;
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const tuning: StreamTuning = {
  ...DEFAULT_TUNING,
  chunkBytes: MIB,
  commitIntervalBytes: 2 * MIB,
  maxUncommittedBytes: 4 * MIB,
  maxBufferedBytes: 2 * MIB,
};

let dir: string;
const agents: AgentProcess[] = [];
const images: OpenedImage[] = [];
const conns: AgentConnection[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bm-resume-ahead-'));
});

afterAll(async () => {
  for (const c of conns) c.close();
  await Promise.all(images.map((i) => i.close()));
  await Promise.all(agents.map((a) => a.stop()));
  await rm(dir, { recursive: true, force: true });
});

/** The image's source, stopping (as if its controller hung, then died) once it reaches `stopAt`. */
function stallingAt(real: ImageSource, stopAt: number, stall: AbortSignal): ImageSource {
  return {
    format: real.format,
    virtualSize: real.virtualSize,
    async *extents(from?: number): AsyncIterable<Extent> {
      for await (const extent of real.extents(from)) {
        if (extent.offset >= stopAt) {
          await new Promise((resolve) => stall.addEventListener('abort', resolve, { once: true }));
          return;
        }
        yield extent;
      }
    },
  };
}

describe('resuming a deploy from a stale checkpoint', () => {
  it('continues from what the agent made durable, not from the stale checkpoint, so no byte travels twice', async () => {
    const size = 24 * MIB;
    const bytes = randomBytes(size);
    const path = join(dir, 'image.raw');
    await writeFile(path, bytes);
    const disk = join(dir, 'disk');
    await writeFile(disk, '');
    await truncate(disk, 32 * MIB);
    const agent = await startAgentProcess({ token: TOKEN, target: disk, targetZeroed: true });
    agents.push(agent);
    const opened = await openImageFile(path, 'raw', { chunkSize: MIB });
    images.push(opened);
    const expected = { algorithm: DigestAlgorithm.sha256, hex: sha256(bytes) };

    // The old controller streams 13 MiB; the agent commits every 2 MiB; the checkpoint it stored is the first commit only.
    const stall = new AbortController();
    const first = connectAgent(agent.address, TOKEN, tuning);
    conns.push(first);
    const progress = { committedOffset: 0, dataBytesSent: 0, frames: 0 };
    let stored = 0;
    const old = streamImage(
      first,
      stallingAt(opened.source, 13 * MIB, stall.signal),
      {
        nodeUuid: 'node-ahead',
        resumeOffset: 0,
        checkpoint: async (offset) => {
          if (stored === 0) stored = offset;
        },
        expected,
        tuning,
        signal: stall.signal,
      },
      progress,
    ).catch(() => 'ended');
    const deadline = Date.now() + 20_000;
    while (progress.committedOffset < 12 * MIB && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const agentCommitted = progress.committedOffset;
    expect(agentCommitted).toBeGreaterThanOrEqual(12 * MIB);
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThan(agentCommitted);

    // The new owner resumes from the stored checkpoint; the agent continues from its own commit.
    const result = await deployImage({
      nodeUuid: 'node-ahead',
      agentAddress: agent.address,
      agentToken: TOKEN,
      source: opened.source,
      expected,
      resumeOffset: stored,
      checkpoint: async () => undefined,
      tuning,
    });
    stall.abort();
    await old;
    expect(result.sha256).toBe(expected.hex);
    expect(sha256((await readFile(disk)).subarray(0, size))).toBe(expected.hex);
    // Superseded, the old stream's writer made what it had written durable: the new one continued there.
    const resumed = agentStreamStarts(agent.output()).at(-1)!;
    expect(resumed.resumeOffset).toBe(stored);
    expect(resumed.startOffset).toBeGreaterThanOrEqual(agentCommitted);
    expect(resumed.startOffset).toBeLessThanOrEqual(13 * MIB);
    expect(result.dataBytesSent).toBe(size - resumed.startOffset);
    expect(agentStreamCounters(agent.output()).at(-1)).toEqual({
      streams: 2,
      bytesReceived: size,
      bytesResent: 0,
    });
  }, 60_000);

  it('starts at the resume offset for a different image, even where the agent committed more of another', async () => {
    const size = 8 * MIB;
    const a = randomBytes(size);
    const b = randomBytes(size);
    await writeFile(join(dir, 'a.raw'), a);
    await writeFile(join(dir, 'b.raw'), b);
    const disk = join(dir, 'disk2');
    await writeFile(disk, '');
    await truncate(disk, 16 * MIB);
    const agent = await startAgentProcess({ token: TOKEN, target: disk, targetZeroed: true });
    agents.push(agent);
    const imageA = await openImageFile(join(dir, 'a.raw'), 'raw', { chunkSize: MIB });
    const imageB = await openImageFile(join(dir, 'b.raw'), 'raw', { chunkSize: MIB });
    images.push(imageA, imageB);
    const common = { nodeUuid: 'node-other', agentAddress: agent.address, agentToken: TOKEN, checkpoint: async () => undefined, tuning };
    await deployImage({ ...common, source: imageA.source, expected: { algorithm: DigestAlgorithm.sha256, hex: sha256(a) } });
    const result = await deployImage({ ...common, source: imageB.source, expected: { algorithm: DigestAlgorithm.sha256, hex: sha256(b) } });
    expect(result.dataBytesSent).toBe(size);
    expect(sha256((await readFile(disk)).subarray(0, size))).toBe(sha256(b));
    expect(agentStreamCounters(agent.output()).at(-1)).toEqual({ streams: 1, bytesReceived: size, bytesResent: 0 });
  }, 60_000);
});
