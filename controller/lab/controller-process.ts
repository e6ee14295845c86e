/**
 * Starts a real controller process (`bmctl controller start`) on its own
 * database, with a fresh admin token, for the lab, the tests and the benchmarks.
 * Everything it makes (database, temp dir, process) goes away in stop().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { syncDatabase, dropDatabase } from '../../db/index.ts';
import { hashToken, newToken } from '../auth/index.ts';
import { Health, HealthCheckResponse_ServingStatus } from '../../proto/gen/grpc/health/v1/health_pb.js';
import { connect, forgetServer, trustServer } from '../../proto/rpc/index.ts';
import { bmctlPath, repoRoot } from './paths.ts';
import { suiteTls } from './suite-tls.ts';
import { freePort } from './free-port.ts';

export { freePort };

/**
 * Node's flags for a controller. V8's default young generation on a 64-bit
 * host is large (semi-spaces of tens of MiB), so an idle controller's RSS is
 * mostly dead young objects; 4 MiB semi-spaces cut it by more than a third.
 * A young generation that small promotes much short-lived garbage, and V8
 * lets the old generation grow to up to four times its live size before a
 * full GC: at its peak a busy controller's heap was mostly that garbage.
 * Growing the old generation by at most half its live size between full
 * GCs keeps the peak near the live size (both in docs/performance-notes.md).
 * The old generation is not capped: a cap would turn a big fleet into an
 * out-of-memory crash. bin/bmctl starts a real controller with the same flags.
 */
export const CONTROLLER_NODE_ARGS: readonly string[] = ['--max-semi-space-size=4', '--heap-growing-percent=50'];

/**
 * LAB_CONTROLLER_NODE_ARGS: more flags for Node, space-separated, when
 * looking into a controller's memory or CPU (--trace-gc, --cpu-prof ...).
 */
function extraNodeArgs(): string[] {
  return (process.env.LAB_CONTROLLER_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
}

async function waitServing(url: string, child: ChildProcess, output: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const conn = connect(url);
  try {
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`controller exited with ${child.exitCode} before serving:\n${output()}`);
      const ok = await conn
        .client(Health)
        .check({}, { timeoutMs: 500 })
        .then((r) => r.status === HealthCheckResponse_ServingStatus.SERVING)
        .catch(() => false);
      if (ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`controller did not serve within ${timeoutMs / 1000} s:\n${output()}`);
  } finally {
    conn.close();
  }
}

const baseDbUrl = process.env.BM_TEST_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/';
export const natsUrl = process.env.BM_NATS_URL ?? 'nats://127.0.0.1:4222';

/** A database name no other run uses (tests, benchmarks and labs run side by side on one server). */
export function uniqueDatabaseUrl(prefix = 'bm_test'): string {
  return `${baseDbUrl.replace(/\/[^/]*$/, '/')}${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}

export interface ControllerProcess {
  readonly url: string;
  readonly token: string;
  readonly databaseUrl: string;
  /** The NATS subject prefix of this run: its events are `<natsPrefix>.events.node.<uuid>`. */
  readonly natsPrefix: string;
  /**
   * The CA file clients verify this controller with (the suite's unless the
   * test gave its own); null when it serves plaintext. While it runs,
   * connect(url) without credentials verifies it against this CA.
   */
  readonly ca: string | null;
  readonly dir: string;
  readonly pid: number;
  /** Everything the process wrote to stdout and stderr so far. */
  logs(): string;
  stop(options?: { keepDatabase?: boolean }): Promise<number | null>;
}

export interface StartOptions {
  readonly databaseUrl?: string;
  readonly extraToml?: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly logLevel?: string;
  /** Defaults to a prefix of its own, so parallel runs on one NATS never see each other's events. */
  readonly natsPrefix?: string;
  /**
   * The API serves TLS only, by default with the suite's CA and certificate
   * (suite-tls.ts; BM_CA names that CA in the test run's environment, so
   * bmctl verifies it too). PEM files of the test's own for [api]
   * tls_cert/tls_key/tls_ca (ca: what clients verify against), or false for a
   * plaintext API: a test about plaintext says so here.
   */
  readonly tls?: TlsFiles | false;
}

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  readonly reloadMs?: number;
}

export function uniqueNatsPrefix(): string {
  return `bm_test_${randomBytes(4).toString('hex')}`;
}

function waitForExit(child: ChildProcess, ms: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

export async function startControllerProcess(options: StartOptions = {}): Promise<ControllerProcess> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bm-ctl-'));
  const databaseUrl = options.databaseUrl ?? uniqueDatabaseUrl();
  const token = newToken();
  const natsPrefix = options.natsPrefix ?? uniqueNatsPrefix();
  const tls: TlsFiles | null = options.tls === false ? null : (options.tls ?? (await suiteTls()));
  const caPem = tls ? await readFile(tls.ca) : null;
  await syncDatabase(databaseUrl);
  const apiPort = await freePort();
  const config = [
    '[api]',
    `listen = "127.0.0.1:${apiPort}"`,
    `tokens = ["${hashToken(token)}"]`,
    ...(tls
      ? [
          `tls_cert = "${tls.cert}"`,
          `tls_key = "${tls.key}"`,
          `tls_ca = "${tls.ca}"`,
          ...(tls.reloadMs ? [`tls_reload_ms = ${tls.reloadMs}`] : []),
        ]
      : []),
    '[database]',
    `url = "${databaseUrl}"`,
    '[nats]',
    `url = "${natsUrl}"`,
    `prefix = "${natsPrefix}"`,
    '[secrets]',
    `key_file = "${path.join(dir, 'secret.key')}"`,
    '[images]',
    `store_path = "${path.join(dir, 'images')}"`,
    '[log]',
    `level = "${options.logLevel ?? 'debug'}"`,
    options.extraToml ?? '',
  ].join('\n');
  await writeFile(path.join(dir, 'bm.toml'), config);

  const child = spawn(
    process.execPath,
    [...CONTROLLER_NODE_ARGS, ...extraNodeArgs(), bmctlPath, 'controller', 'start', '--config', path.join(dir, 'bm.toml')],
    {
      cwd: repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));

  const url = `127.0.0.1:${apiPort}`;
  // Both names the certificate carries: a test may dial either.
  const dialled = [url, `localhost:${apiPort}`];
  const cleanup = async (keepDatabase: boolean): Promise<void> => {
    for (const address of dialled) forgetServer(address);
    if (!keepDatabase) await dropDatabase(databaseUrl).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };

  if (caPem) for (const address of dialled) trustServer(address, caPem);
  await waitServing(url, child, () => output, 30_000).catch(async (err: unknown) => {
    child.kill('SIGKILL');
    await cleanup(false);
    throw err;
  });

  return {
    url,
    token,
    databaseUrl,
    natsPrefix,
    ca: tls?.ca ?? null,
    dir,
    pid: child.pid!,
    logs: () => output,
    async stop(opts = {}) {
      child.kill('SIGTERM');
      const code = await waitForExit(child, 10_000);
      await cleanup(opts.keepDatabase ?? false);
      return code;
    },
  };
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the real bmctl as a child process. It never sees this user's saved
 * defaults (a lab of theirs): what it talks to is what `env` says.
 */
export function runBmctl(args: readonly string[], env: Readonly<Record<string, string>> = {}, timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve) => {
    const hermetic = { XDG_CONFIG_HOME: path.join(os.tmpdir(), 'bm-no-saved-defaults') };
    const child = spawn(process.execPath, [bmctlPath, ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...hermetic, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
