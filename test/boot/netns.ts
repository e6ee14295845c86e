/**
 * Network namespaces for boot tests: a "LAN" is a hub namespace holding a
 * bridge, and leaf namespaces each joined to it by a veth pair. Names carry a
 * random suffix so parallel runs never collide, and `destroy()` removes
 * everything (deleting a namespace kills its veths and bridge).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function ip(...args: string[]): Promise<string> {
  const { stdout } = await run('ip', args);
  return stdout;
}

export interface Leaf {
  readonly ns: string;
  /** The leaf's interface name inside its namespace. */
  readonly ifname: string;
  readonly address: string | null;
  readonly mac: string;
}

export interface Lan {
  readonly id: string;
  readonly hub: string;
  readonly leaves: Leaf[];
  addLeaf(name: string, cidr: string | null, mac?: string): Promise<Leaf>;
  destroy(): Promise<void>;
}

/** Creates an empty LAN: a hub namespace with bridge `br0` up. */
export async function createLan(): Promise<Lan> {
  const id = randomBytes(3).toString('hex');
  const hub = `bmhub${id}`;
  const created: string[] = [];
  const leaves: Leaf[] = [];
  await ip('netns', 'add', hub);
  created.push(hub);
  await ip('-n', hub, 'link', 'set', 'lo', 'up');
  await ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0');
  await ip('-n', hub, 'link', 'set', 'br0', 'up');
  let index = 0;
  return {
    id,
    hub,
    leaves,
    async addLeaf(name: string, cidr: string | null, mac?: string): Promise<Leaf> {
      const ns = `bm${name.slice(0, 4)}${id}`;
      const n = index++;
      const hubSide = `h${n}${id}`;
      const leafSide = `l${n}${id}`;
      await ip('netns', 'add', ns);
      created.push(ns);
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', hub, 'link', 'add', hubSide, 'type', 'veth', 'peer', 'name', leafSide);
      await ip('-n', hub, 'link', 'set', leafSide, 'netns', ns);
      await ip('-n', hub, 'link', 'set', hubSide, 'master', 'br0');
      await ip('-n', hub, 'link', 'set', hubSide, 'up');
      const ifname = 'eth0';
      await ip('-n', ns, 'link', 'set', leafSide, 'name', ifname);
      if (mac) await ip('-n', ns, 'link', 'set', ifname, 'address', mac);
      if (cidr) await ip('-n', ns, 'addr', 'add', cidr, 'dev', ifname);
      await ip('-n', ns, 'link', 'set', ifname, 'up');
      const shown = await ip('-n', ns, '-o', 'link', 'show', ifname);
      const actualMac = /link\/ether ([0-9a-f:]{17})/.exec(shown)?.[1] ?? '';
      const leaf = { ns, ifname, address: cidr ? cidr.split('/')[0]! : null, mac: actualMac };
      leaves.push(leaf);
      return leaf;
    },
    async destroy(): Promise<void> {
      for (const ns of created.reverse()) await ip('netns', 'del', ns).catch(() => undefined);
    },
  };
}

/** Runs a command inside a namespace and returns stdout (rejects on non-zero exit). */
export async function nsExec(
  ns: string,
  command: string,
  args: readonly string[],
  timeoutMs = 30_000,
): Promise<{ stdout: string; stderr: string }> {
  return run('ip', ['netns', 'exec', ns, command, ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
}

/** Starts a long-running process in a namespace; the caller kills it by PID. */
export function nsSpawn(ns: string, command: string, args: readonly string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, command, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Waits until `child` writes a line matching `pattern` on stdout or stderr. */
export function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out waiting for ${pattern}; output so far: ${seen.slice(-2000)}`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString();
      for (const line of seen.split('\n')) {
        if (pattern.test(line)) {
          cleanup();
          resolve(line);
          return;
        }
      }
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`process exited (${code}) before ${pattern}; output: ${seen.slice(-2000)}`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', onExit);
  });
}

/** Kills a child we started (by its PID) and waits for it to exit. */
export async function stopChild(child: ChildProcess | null | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
