/**
 * The end-to-end lab: one network namespace holding a bridge (the
 * provisioning segment), the machines' tap devices, a real controller
 * process (`bmctl controller start`) with [boot] in full DHCP mode on that
 * bridge, and the machines' BMCs (ipmi_sim on the namespace's loopback).
 * The controller reaches MariaDB and NATS through the tunnel; the test
 * reaches the controller's API and the agents through it.
 * close() stops everything it started, by PID, and deletes the namespace.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { hashToken, newToken } from '../../controller/auth/tokens.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { Health, HealthCheckResponse_ServingStatus } from '../../proto/gen/grpc/health/v1/health_pb.js';
import { connect, tlsCredentials } from '../../proto/rpc/index.ts';
import { ip, stopChild } from '../boot/netns.ts';
import { startTunnel, type Tunnel } from './tunnel.ts';
import { bmctlPath, makeCa, makeServerCert, natsUrl, repoRoot, uniqueDatabaseUrl, uniqueNatsPrefix } from '../../controller/lab/index.ts';

export const SERVER_ADDRESS = '10.99.0.1';
export const API_PORT = 6385;

export interface TestbedOptions {
  readonly discovery: boolean;
  /** Image names (or http_root paths) of the default deploy kernel and ramdisk. */
  readonly deployKernel: string;
  readonly deployRamdisk: string;
}

export interface Testbed {
  readonly ns: string;
  readonly dir: string;
  /** The API as the test reaches it (127.0.0.1:port on the host), TLS only. */
  readonly apiUrl: string;
  /** The CA the API's certificate (for 127.0.0.1 and the provisioning address) chains to: bmctl's --ca. */
  readonly caFile: string;
  readonly adminToken: string;
  readonly databaseUrl: string;
  readonly tunnel: Tunnel;
  /** A tap device on the bridge for one machine. */
  addTap(): Promise<string>;
  controllerLog(): string;
  close(): Promise<void>;
}

function hostPortOf(url: string): { host: string; port: number } {
  const u = new URL(url.replace(/^(mysql|nats):/, 'http:'));
  return { host: u.hostname, port: Number(u.port) };
}

export async function startTestbed(options: TestbedOptions): Promise<Testbed> {
  const id = randomBytes(3).toString('hex');
  const ns = `bme2e${id}`;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bm-e2e-'));
  const databaseUrl = uniqueDatabaseUrl('bm_e2e');
  const adminToken = newToken();
  let controller: ChildProcess | null = null;
  let tunnel: Tunnel | null = null;
  let output = '';
  let taps = 0;
  const cleanup = async (): Promise<void> => {
    await stopChild(controller, 'SIGTERM');
    await tunnel?.close();
    await ip('netns', 'del', ns).catch(() => undefined);
    await dropDatabase(databaseUrl).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await ip('netns', 'add', ns);
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
    await ip('-n', ns, 'link', 'add', 'br0', 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0');
    await ip('-n', ns, 'addr', 'add', `${SERVER_ADDRESS}/24`, 'dev', 'br0');
    await ip('-n', ns, 'link', 'set', 'br0', 'up');

    const db = hostPortOf(databaseUrl);
    const nats = hostPortOf(natsUrl);
    tunnel = await startTunnel(ns, dir, [
      { inside: '127.0.0.1:3306', host: db.host, port: db.port },
      { inside: '127.0.0.1:4222', host: nats.host, port: nats.port },
    ]);
    await syncDatabase(databaseUrl);
    const insideDb = databaseUrl.replace(/@[^/]+\//, '@127.0.0.1:3306/');
    for (const sub of ['tftp', 'http', 'images', 'tls']) await mkdir(path.join(dir, sub), { recursive: true });
    // TLS as in production: the agent in the VM dials 10.99.0.1 and verifies the CA the boot script pins.
    const tlsDir = path.join(dir, 'tls');
    const ca = await makeCa(tlsDir, 'e2e-ca');
    const server = await makeServerCert(tlsDir, ca, 'e2e-api', undefined, 2, [SERVER_ADDRESS]);
    const config = [
      '[api]',
      `listen = "0.0.0.0:${API_PORT}"`,
      `tokens = ["${hashToken(adminToken)}"]`,
      `tls_cert = "${server.cert}"`,
      `tls_key = "${server.key}"`,
      `tls_ca = "${ca.cert}"`,
      '[database]',
      `url = "${insideDb}"`,
      '[nats]',
      'url = "nats://127.0.0.1:4222"',
      // Our own subjects: other tests on this NATS publish events too.
      `prefix = "${uniqueNatsPrefix()}"`,
      '[secrets]',
      `key_file = "${path.join(dir, 'secret.key')}"`,
      '[images]',
      `store_path = "${path.join(dir, 'images')}"`,
      '[log]',
      'level = "debug"',
      '[discovery]',
      `enabled = ${options.discovery}`,
      '[conductor]',
      // TCG is slow and the machine shared (docs/performance-notes.md): give a PXE boot into the agent ten times what it takes.
      'callback_timeout_s = 600',
      'poll_ms = 200',
      '[power]',
      'call_timeout_s = 5',
      'settle_timeout_s = 30',
      '[boot]',
      `server_address = "${SERVER_ADDRESS}"`,
      'mode = "full"',
      'range_start = "10.99.0.100"',
      'range_end = "10.99.0.199"',
      `tftp_root = "${path.join(dir, 'tftp')}"`,
      `http_root = "${path.join(dir, 'http')}"`,
      `deploy_kernel = "${options.deployKernel}"`,
      `deploy_ramdisk = "${options.deployRamdisk}"`,
      'kernel_args = ["console=ttyS0", "quiet"]',
    ].join('\n');
    await writeFile(path.join(dir, 'bm.toml'), config);
    controller = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, bmctlPath, 'controller', 'start', '--config', path.join(dir, 'bm.toml')],
      { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    controller.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    controller.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const apiUrl = await tunnel.reach('127.0.0.1', API_PORT);
    const conn = connect(apiUrl, { credentials: tlsCredentials(await readFile(ca.cert)) });
    try {
      const deadline = Date.now() + 60_000;
      for (;;) {
        if (controller.exitCode !== null) throw new Error(`controller exited with ${controller.exitCode} before serving:\n${output}`);
        const ok = await conn
          .client(Health)
          .check({}, { timeoutMs: 1000 })
          .then((r) => r.status === HealthCheckResponse_ServingStatus.SERVING)
          .catch(() => false);
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`controller did not serve within 60 s:\n${output}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      conn.close();
    }
    const t = tunnel;
    return {
      ns,
      dir,
      apiUrl,
      caFile: ca.cert,
      adminToken,
      databaseUrl,
      tunnel: t,
      async addTap() {
        const tap = `tap${taps++}`;
        await ip('-n', ns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
        await ip('-n', ns, 'link', 'set', tap, 'master', 'br0');
        await ip('-n', ns, 'link', 'set', tap, 'up');
        return tap;
      },
      controllerLog: () => output,
      close: cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
