/**
 * Three local `nats-server` processes as one cluster (routes between them,
 * JetStream on, each with its own client, route and monitoring ports and its
 * own store directory), for tests of controllers on a NATS cluster. A server
 * can be stopped and started again on the same ports and store. Only the
 * processes started here are ever signalled, by their PIDs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../controller/lab/index.ts';

interface Member {
  readonly name: string;
  readonly port: number;
  readonly routePort: number;
  readonly httpPort: number;
  readonly dir: string;
  child: ChildProcess | null;
  output: string;
}

export interface NatsCluster {
  /** `nats://127.0.0.1:p1,nats://127.0.0.1:p2,nats://127.0.0.1:p3`, as `[nats] url` takes it. */
  readonly url: string;
  readonly names: readonly string[];
  /** The server a client connection of this name is connected to (from each server's /connz), or null. */
  serverOf(connectionName: string): Promise<string | null>;
  /** How many routes a server has up (2 when it sees both peers). */
  routes(name: string): Promise<number>;
  stop(name: string): Promise<void>;
  start(name: string): Promise<void>;
  output(name: string): string;
  close(): Promise<void>;
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function monitor<T>(m: Member, what: string): Promise<T | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${m.httpPort}/${what}`, { signal: AbortSignal.timeout(2000) });
    return res.ok ? ((await res.json()) as T) : null;
  } catch {
    return null;
  }
}

export async function startNatsCluster(): Promise<NatsCluster> {
  const base = await mkdtemp(path.join(os.tmpdir(), 'bm-nats-cluster-'));
  const members: Member[] = [];
  for (const name of ['n1', 'n2', 'n3'])
    members.push({
      name,
      port: await freePort(),
      routePort: await freePort(),
      httpPort: await freePort(),
      dir: path.join(base, name),
      child: null,
      output: '',
    });
  const routes = members.map((m) => `nats://127.0.0.1:${m.routePort}`).join(',');
  const byName = (name: string): Member => {
    const m = members.find((x) => x.name === name);
    if (!m) throw new Error(`no NATS server ${name} in this cluster`);
    return m;
  };

  const start = async (name: string): Promise<void> => {
    const m = byName(name);
    if (m.child) throw new Error(`NATS server ${name} is already running`);
    const child = spawn(
      'nats-server',
      [
        '-a',
        '127.0.0.1',
        '-p',
        String(m.port),
        '-m',
        String(m.httpPort),
        '-n',
        m.name,
        '-js',
        '-sd',
        m.dir,
        '--cluster_name',
        `bm-test-${path.basename(base)}`,
        '--cluster',
        `nats://127.0.0.1:${m.routePort}`,
        '--routes',
        routes,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    m.child = child;
    child.stdout!.on('data', (d: Buffer) => (m.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (m.output += d.toString()));
    child.once('exit', () => {
      if (m.child === child) m.child = null;
    });
    const deadline = Date.now() + 10_000;
    while (!(await listening(m.port))) {
      if (m.child !== child) throw new Error(`nats-server ${name} exited:\n${m.output}`);
      if (Date.now() > deadline) throw new Error(`nats-server ${name} did not listen within 10 s:\n${m.output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const stop = async (name: string): Promise<void> => {
    const m = byName(name);
    const child = m.child;
    if (!child) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    m.child = null;
  };

  try {
    for (const m of members) await start(m.name);
  } catch (err) {
    for (const m of members) await stop(m.name);
    await rm(base, { recursive: true, force: true });
    throw err;
  }

  return {
    url: members.map((m) => `nats://127.0.0.1:${m.port}`).join(','),
    names: members.map((m) => m.name),
    async serverOf(connectionName) {
      for (const m of members) {
        if (!m.child) continue;
        const connz = await monitor<{ connections?: { name?: string }[] }>(m, 'connz?limit=1024');
        if (connz?.connections?.some((c) => c.name === connectionName)) return m.name;
      }
      return null;
    },
    async routes(name) {
      const routez = await monitor<{ num_routes?: number }>(byName(name), 'routez');
      return routez?.num_routes ?? 0;
    },
    stop,
    start,
    output: (name) => byName(name).output,
    async close() {
      for (const m of members) await stop(m.name);
      await rm(base, { recursive: true, force: true });
    },
  };
}
