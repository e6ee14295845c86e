/**
 * Helpers shared by the DHCP tests: our server in a namespace through
 * boot-runner.ts, and busybox udhcpc as the client, whose event script
 * writes the variables udhcpc hands it so the test can read the lease.
 */
import type { ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { RunnerConfig } from './boot-runner.ts';
import { nsExec, nsSpawn, waitForLine } from './netns.ts';
import { requirePeer } from './peers.ts';

export const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

export interface Runner {
  readonly child: ChildProcess;
  readonly ready: Record<string, unknown>;
  stats(): Promise<Record<string, Record<string, unknown>>>;
}

export async function startRunner(ns: string, config: RunnerConfig): Promise<Runner> {
  const child = nsSpawn(ns, process.execPath, [path.join(repoRoot, 'test/boot/boot-runner.ts'), JSON.stringify(config)]);
  // Node starts the runner from the TypeScript sources: a few seconds alone, over the default 15 s once on a
  // loaded CI host (restarted in the middle of a test, with no output yet).
  const line = await waitForLine(child, /"ready"/, 60_000);
  const ready = (JSON.parse(line) as { ready: Record<string, unknown> }).ready;
  return {
    child,
    ready,
    async stats() {
      const next = waitForLine(child, /"stats"/);
      child.stdin?.write('stats\n');
      return (JSON.parse(await next) as { stats: Record<string, Record<string, unknown>> }).stats;
    },
  };
}

export interface UdhcpcResult {
  readonly ok: boolean;
  /** The variables udhcpc passed to its script on "bound" (ip, siaddr, boot_file, serverid, ...). */
  readonly bound: Record<string, string> | null;
  readonly output: string;
}

/** Runs udhcpc once (-q -n) on eth0 of `ns` with extra arguments; never configures the interface. */
export async function udhcpc(ns: string, args: readonly string[], tries = 3): Promise<UdhcpcResult> {
  const bin = requirePeer('/usr/sbin/udhcpc');
  const dir = await mkdtemp(path.join(tmpdir(), 'bm-udhcpc-'));
  const script = path.join(dir, 'script.sh');
  await writeFile(script, `#!/bin/sh\nenv > "${dir}/event-$1"\n`);
  await chmod(script, 0o755);
  try {
    const { stdout, stderr } = await nsExec(
      ns,
      bin,
      ['-i', 'eth0', '-f', '-q', '-n', '-t', String(tries), '-T', '1', '-A', '1', '-s', script, ...args],
      30_000,
    ).catch((err: { stdout?: string; stderr?: string }) => ({
      stdout: err.stdout ?? '',
      stderr: (err.stderr ?? '') + '\n(exit non-zero)',
    }));
    const events = await readdir(dir);
    let bound: Record<string, string> | null = null;
    if (events.includes('event-bound')) {
      bound = {};
      for (const line of (await readFile(path.join(dir, 'event-bound'), 'utf8')).split('\n')) {
        const eq = line.indexOf('=');
        if (eq > 0) bound[line.slice(0, eq)] = line.slice(eq + 1);
      }
    }
    return { ok: bound !== null, bound, output: stdout + stderr };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
