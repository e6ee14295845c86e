/**
 * The agent bundle (scripts/build-agent.sh, one file as in the ramdisk)
 * hashes on worker threads: a deploy to it verifies with the block digest,
 * read back (the default) and as written, and the agent process has the
 * worker's thread, by its name. A worker started from a module path would fail here,
 * since the bundle has no modules beside it. Started with the ramdisk's Node
 * flags, it also paces its scavenges by the bytes it receives.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deployImage } from '../../controller/deploy/deploy.ts';
import { openImageFile } from '../../controller/images/open.ts';
import { HASH_THREAD_NAME } from '../../agent/disk/hash-pool.ts';
import { takesDirectIo } from '../agent/disk-helpers.ts';
import { BlockSha256, DigestAlgorithm } from '../../proto/digest/block-sha256.ts';
import { RAMDISK_NODE_ARGS, repoRoot, startAgentProcess, type AgentProcess } from '../../controller/lab/index.ts';

const run = promisify(execFile);
const MIB = 1024 * 1024;
const TOKEN = `bma_${randomBytes(24).toString('base64url')}`;

let dir: string;
let bundle: string;
let imagePath: string;
let image: Buffer;
const agents: AgentProcess[] = [];

async function threadNames(pid: number): Promise<string[]> {
  const tasks = await readdir(`/proc/${pid}/task`);
  return Promise.all(tasks.map(async (task) => (await readFile(`/proc/${pid}/task/${task}/comm`, 'utf8').catch(() => '')).trim()));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bm-bundle-hash-'));
  bundle = join(dir, 'agent.js');
  await run(join(repoRoot, 'scripts/build-agent.sh'), [bundle]);
  // 18 MiB: four whole 4 MiB blocks, one of them a hole, and a short last block.
  image = randomBytes(18 * MIB);
  image.fill(0, 4 * MIB, 8 * MIB);
  imagePath = join(dir, 'image.raw');
  await writeFile(imagePath, image);
}, 60_000);

afterAll(async () => {
  await Promise.all(agents.splice(0).map((agent) => agent.stop()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the agent bundle hashes on worker threads', () => {
  it.each(['read-back', 'as-written'] as const)(
    'verifies a deploy with the block digest, %s',
    async (digest) => {
      const disk = join(dir, `${digest}.disk`);
      await writeFile(disk, '');
      await truncate(disk, image.length);
      const agent = await startAgentProcess({
        token: TOKEN,
        target: disk,
        targetZeroed: true,
        script: bundle,
        extraArgs: ['--digest', digest],
      });
      agents.push(agent);
      // Workers start on first use, not with the agent.
      expect(await threadNames(agent.pid)).not.toContain(HASH_THREAD_NAME);
      const expected = new BlockSha256();
      expected.update(image);
      const hex = expected.digest();
      const opened = await openImageFile(imagePath, 'raw');
      try {
        const result = await deployImage({
          nodeUuid: `bundle-${digest}`,
          agentAddress: agent.address,
          agentToken: TOKEN,
          source: opened.source,
          expected: { algorithm: DigestAlgorithm.blocks, hex },
          checkpoint: async () => undefined,
          attempts: 1,
        });
        expect(result.digestMethod).toBe(digest);
      } finally {
        await opened.close();
      }
      expect((await readFile(disk)).equals(image)).toBe(true);
      // The hashing worker is a thread of the agent process, started for this deploy.
      expect(await threadNames(agent.pid)).toContain(HASH_THREAD_NAME);
      expect(agent.output()).not.toMatch(/hashing failed|worker stopped/);
    },
    60_000,
  );

  it('started as the ramdisk starts it, scavenges every 2 MiB of image data received', async () => {
    const disk = join(dir, 'ramdisk-flags.disk');
    await writeFile(disk, '');
    await truncate(disk, image.length);
    const agent = await startAgentProcess({ token: TOKEN, target: disk, targetZeroed: true, script: bundle, nodeArgs: RAMDISK_NODE_ARGS });
    agents.push(agent);
    const expected = new BlockSha256();
    expected.update(image);
    const opened = await openImageFile(imagePath, 'raw');
    try {
      await deployImage({
        nodeUuid: 'bundle-ramdisk-flags',
        agentAddress: agent.address,
        agentToken: TOKEN,
        source: opened.source,
        expected: { algorithm: DigestAlgorithm.blocks, hex: expected.digest() },
        checkpoint: async () => undefined,
        attempts: 1,
      });
    } finally {
      await opened.close();
    }
    expect((await readFile(disk)).equals(image)).toBe(true);
    // 14 MiB of data (the 4 MiB hole goes as a zero run): one scavenge per 2 MiB.
    const finished = /"msg":"write-image finished"[^\n]*"youngGcs":(\d+)/.exec(agent.output());
    expect(finished, agent.output()).not.toBeNull();
    expect(Number(finished?.[1])).toBe(7);
    // The data frames landed in aligned receive buffers and went to the disk with O_DIRECT, where the temp
    // directory's file system takes it (else every frame goes through the cache).
    const direct = /"msg":"write-image finished"[^\n]*"directBytes":(\d+)/.exec(agent.output());
    expect(Number(direct?.[1]), agent.output()).toBe((await takesDirectIo(dir)) ? 14 * MIB : 0);
  }, 60_000);
});
