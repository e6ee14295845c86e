/**
 * A MariaDB of a test's own: its own data directory in a temp dir, its own
 * port on loopback, started from Debian's binaries (`mariadb-install-db`,
 * `mariadbd`) with no config file read, so a test may stop, freeze and
 * restart it without touching the shared server on 3306.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { freePort } from '../../controller/lab/index.ts';

const run = promisify(execFile);

export interface PrivateMariaDb {
  readonly port: number;
  readonly dir: string;
  /** mysql://root@127.0.0.1:<port>/<name> */
  url(database: string): string;
  readonly pid: number;
  /** SIGSTOP: the server keeps its sockets but answers nothing (a hung database). */
  freeze(): void;
  thaw(): void;
  /** Stops the process (SIGTERM, then SIGKILL) and starts it again on the same data and port. */
  restart(): Promise<void>;
  /** Ends the server and removes its data directory. */
  stop(): Promise<void>;
}

async function waitReady(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`mariadbd exited with ${child.exitCode}:\n${log()}`);
    const ok = await mysql
      .createConnection({ host: '127.0.0.1', port, user: 'root', connectTimeout: 1000 })
      .then(async (c) => {
        await c.query('SELECT 1');
        await c.end();
        return true;
      })
      .catch(() => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`mariadbd on ${port} did not answer within 60 s:\n${log()}`);
}

function exited(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function startPrivateMariaDb(): Promise<PrivateMariaDb> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bm-mariadb-'));
  const data = path.join(dir, 'data');
  const port = await freePort();
  const user = os.userInfo().username;
  await run('mariadb-install-db', [
    '--no-defaults',
    `--datadir=${data}`,
    `--user=${user}`,
    '--auth-root-authentication-method=normal',
    '--skip-test-db',
  ]);
  let output = '';
  const launch = (): ChildProcess => {
    const child = spawn(
      'mariadbd',
      [
        '--no-defaults',
        `--datadir=${data}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        `--socket=${path.join(dir, 'mysqld.sock')}`,
        `--pid-file=${path.join(dir, 'mysqld.pid')}`,
        `--user=${user}`,
        '--skip-log-bin',
        '--innodb-buffer-pool-size=64M',
        '--max-connections=500',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    return child;
  };
  let child = launch();
  try {
    await waitReady(port, child, () => output);
  } catch (err) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    dir,
    url: (database) => `mysql://root@127.0.0.1:${port}/${database}`,
    get pid() {
      return child.pid!;
    },
    freeze: () => void child.kill('SIGSTOP'),
    thaw: () => void child.kill('SIGCONT'),
    async restart() {
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      await exited(child, 20_000);
      child = launch();
      await waitReady(port, child, () => output);
    },
    async stop() {
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      await exited(child, 20_000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
