/**
 * What the stream and fan-out benches both need of their processes: the
 * agent and a bench driver bundled as the ramdisk runs them (one file each,
 * no type stripping), and a process's CPU time and peak RSS from /proc.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cpuSecondsOf as procCpuSeconds } from '../../controller/lab/index.ts';

const run = promisify(execFile);
const benchDir = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(benchDir, '../..');

/**
 * Node's flags for a bench's controller-side driver (stream-driver.ts, fanout-driver.ts): the small V8 heaps the
 * agent had before its heap-growing step, kept so the controller-side CPU and RSS figures compare across sessions.
 */
export const DRIVER_NODE_ARGS: readonly string[] = ['--max-semi-space-size=1', '--max-old-space-size=64'];

/** Bundles the agent (scripts/build-agent.sh) and the bench driver `driverName` (a .ts beside this file) into `dir`. */
export async function bundleAgentAndDriver(dir: string, driverName: string): Promise<{ agent: string; driver: string }> {
  const agent = path.join(dir, 'agent.js');
  await run(path.join(repoRoot, 'scripts/build-agent.sh'), [agent]);
  const driver = path.join(dir, `${driverName}.mjs`);
  await run(path.join(repoRoot, 'node_modules/.bin/esbuild'), [
    path.join(benchDir, `${driverName}.ts`),
    '--bundle',
    '--platform=node',
    '--target=node24',
    '--format=esm',
    '--log-level=warning',
    `--outfile=${driver}`,
    "--banner:js=import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
  ]);
  return { agent, driver };
}

/** User + system CPU seconds a process has used so far (all its threads), from /proc/<pid>/stat. */
export async function cpuSecondsOf(pid: number): Promise<number> {
  const seconds = procCpuSeconds(pid);
  if (seconds === null) throw new Error(`no CPU time for process ${pid}: /proc/${pid}/stat is gone`);
  return seconds;
}

/** Peak RSS in MiB (one decimal), or null once the process is gone. */
export async function peakRssOf(pid: number): Promise<number | null> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const match = /VmHWM:\s+(\d+) kB/.exec(text);
  return match ? Math.round(Number(match[1]) / 102.4) / 10 : null;
}
