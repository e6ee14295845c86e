/**
 * Starts the deploy agent as a child process on loopback, writing to a file:
 * what a virtual machine of the lab runs as its ramdisk, and what the deploy
 * tests and the stream benchmark talk to. stop() and kill() end only this
 * child, by its PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { agentMainPath, machineRoot } from './paths.ts';
import { cpuSecondsOf } from './proc-cpu.ts';

/**
 * Node's flags as the ramdisk starts the agent (ramdisk/rootfs/init): small V8 heaps that grow in large steps
 * (agent/main.ts says why), and gc() for the scavenges the agent paces by received bytes (agent/server/young-gc.ts).
 */
export const RAMDISK_NODE_ARGS: readonly string[] = [
  '--max-semi-space-size=1',
  '--max-old-space-size=64',
  '--heap-growing-percent=300',
  '--expose-gc',
];
/**
 * The environment the ramdisk starts the agent with (ramdisk/rootfs/init), given to every agent started here:
 * two glibc malloc arenas instead of up to eight per core, which threads that allocate (V8's GC helpers, libuv's
 * pool, the hash worker) each take one of and which kept freed memory as RSS; and a 64 MiB trim threshold, so
 * memory freed at the top of the heap stays for the next socket reads instead of going back to the kernel and
 * faulting in again (docs/performance-notes.md).
 */
const RAMDISK_NODE_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', MALLOC_TRIM_THRESHOLD_: '67108864' };

export interface AgentProcessOptions {
  readonly token: string;
  readonly target: string;
  /** 0 picks a free port (read back from the agent's log). */
  readonly port?: number;
  readonly targetZeroed?: boolean;
  readonly root?: string;
  readonly extraArgs?: readonly string[];
  /** Run this script instead of agent/main.ts (e.g. the esbuild bundle). */
  readonly script?: string;
  readonly env?: Readonly<Record<string, string>>;
  /** Options for node itself, before the script (e.g. --max-semi-space-size=1). */
  readonly nodeArgs?: readonly string[];
  /** Register with (and heartbeat to) this controller. */
  readonly controller?: string;
  /** Register with the controller named on the kernel command line (--cmdline). */
  readonly register?: boolean;
  /** How long the agent may take to listen (default 15 s). */
  readonly listenTimeoutMs?: number;
}

/**
 * CPU seconds (user + system) an agent had used when it first listened (its
 * start-up), when its first image write began and ended (as its log said so),
 * and when stop() or kill() ended it (its whole life); null until then, or
 * when /proc could not tell.
 */
export interface AgentCpu {
  readonly atListen: number | null;
  readonly atWriteStarted: number | null;
  readonly atWriteFinished: number | null;
  readonly atStop: number | null;
}

export interface AgentProcess {
  readonly pid: number;
  readonly port: number;
  readonly address: string;
  readonly child: ChildProcess;
  /** What the agent logged so far (stderr). */
  output(): string;
  /** What the agent's CPU time was at points of its life (the lab's machines share this host's cores). */
  readonly cpu: AgentCpu;
  /** Kills with SIGKILL, as a crash or a power cut would. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL after a grace period. */
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startAgentProcess(options: AgentProcessOptions): Promise<AgentProcess> {
  const args = [
    ...(options.nodeArgs ?? []),
    options.script ?? agentMainPath,
    '--listen',
    '127.0.0.1',
    '--port',
    String(options.port ?? 0),
    '--root',
    options.root ?? machineRoot,
    '--target',
    options.target,
    ...(options.controller ? ['--controller', options.controller] : options.register ? [] : ['--no-register']),
    ...(options.targetZeroed ? ['--target-zeroed'] : []),
    ...(options.extraArgs ?? []),
  ];
  // The token goes through the environment: argv is visible to every user.
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...RAMDISK_NODE_ENV, ...options.env, BM_AGENT_TOKEN: options.token },
  });
  let log = '';
  const cpu: { -readonly [K in keyof AgentCpu]: AgentCpu[K] } = {
    atListen: null,
    atWriteStarted: null,
    atWriteFinished: null,
    atStop: null,
  };
  const cpuNow = (): number | null => (child.pid === undefined ? null : cpuSecondsOf(child.pid));
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    if (cpu.atWriteStarted === null && text.includes('"msg":"write-image started"')) cpu.atWriteStarted = cpuNow();
    if (cpu.atWriteFinished === null && text.includes('"msg":"write-image finished"')) cpu.atWriteFinished = cpuNow();
  });
  const port = await new Promise<number>((resolve, reject) => {
    const listenMs = options.listenTimeoutMs ?? 15_000;
    const timer = setTimeout(() => {
      // Not ours to leave running: a late listener would be an agent nobody stops.
      child.kill('SIGKILL');
      reject(new Error(`agent did not listen within ${listenMs / 1000} s:\n${log}`));
    }, listenMs);
    child.stderr?.on('data', (text: string) => {
      log += text;
      const match = /"msg":"listening"[^\n]*"port":(\d+)/.exec(log);
      if (match) {
        cpu.atListen ??= cpuNow();
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`agent exited (${code ?? signal}) before listening:\n${log}`));
    });
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('agent has no pid');
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  // Read before the signal: once the child is reaped its /proc entry is gone.
  const lastCpu = (): void => {
    if (alive()) cpu.atStop = cpuSecondsOf(pid) ?? cpu.atStop;
  };
  return {
    pid,
    port,
    address: `127.0.0.1:${port}`,
    child,
    output: () => log,
    cpu,
    async kill() {
      lastCpu();
      if (alive()) process.kill(pid, 'SIGKILL');
      await exited(child);
    },
    async stop() {
      if (!alive()) return;
      lastCpu();
      process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
      }, 3000);
      await exited(child);
      clearTimeout(timer);
    },
  };
}
