import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgentProcess } from './agent-process.ts';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bm-agent-cpu-'));
  await writeFile(join(dir, 'disk'), '');
  await truncate(join(dir, 'disk'), 1024 * 1024);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('agent process', () => {
  it('reports the CPU time it took to start and, once stopped, its whole life', async () => {
    const agent = await startAgentProcess({ token: '', target: join(dir, 'disk'), port: 0 });
    try {
      expect(agent.cpu.atStop).toBeNull();
      // Starting Node and loading the agent costs tens of milliseconds at least; /proc counts in 10 ms ticks.
      expect(agent.cpu.atListen).toBeGreaterThan(0);
    } finally {
      await agent.stop();
    }
    expect(agent.cpu.atStop).toBeGreaterThanOrEqual(agent.cpu.atListen!);
    // It wrote no image, so those marks stay unset.
    expect(agent.cpu.atWriteStarted).toBeNull();
    expect(agent.cpu.atWriteFinished).toBeNull();
    // Stopping an agent that has ended keeps what was read while it lived.
    const read = agent.cpu.atStop;
    await agent.stop();
    expect(agent.cpu.atStop).toBe(read);
  });
});
