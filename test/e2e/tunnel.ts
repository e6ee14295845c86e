/**
 * A test's way in and out of its network namespace: services on the host's
 * loopback (MariaDB, NATS) appear on the namespace's loopback, and addresses
 * inside the namespace (the controller's API, an agent on the bridge) get a
 * port on the host's loopback. Unix sockets carry the bytes across (see
 * ns-relay.ts); no route or address is added to the host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stopChild, waitForLine } from '../boot/netns.ts';
import { splice } from './splice.ts';

const relayScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ns-relay.ts');

const open = new Set<net.Socket>();

function listening(server: net.Server, ...args: unknown[]): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    (server.listen as (...a: unknown[]) => void)(...args, () => resolve());
  });
}

export interface Forward {
  /** Where it appears inside the namespace, e.g. 127.0.0.1:3306. */
  readonly inside: string;
  /** Where it is on the host, e.g. { host: '127.0.0.1', port: 3306 }. */
  readonly host: string;
  readonly port: number;
}

export interface Tunnel {
  /** A 127.0.0.1:port on the host that reaches host:port inside the namespace. */
  reach(host: string, port: number): Promise<string>;
  readonly relay: ChildProcess;
  close(): Promise<void>;
}

export async function startTunnel(ns: string, dir: string, forwards: readonly Forward[]): Promise<Tunnel> {
  const servers: net.Server[] = [];
  const args: string[] = [];
  for (const [i, f] of forwards.entries()) {
    const socketPath = path.join(dir, `fwd${i}.sock`);
    const server = net.createServer((client) => splice(client, net.connect(f.port, f.host), open));
    await listening(server, socketPath);
    servers.push(server);
    args.push('--forward', `${f.inside}=${socketPath}`);
  }
  const dialSocket = path.join(dir, 'dial.sock');
  args.push('--dial', dialSocket);
  const relay = spawn('ip', ['netns', 'exec', ns, process.execPath, relayScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await waitForLine(relay, /relay ready/, 15_000);
  } catch (error) {
    await stopChild(relay);
    for (const s of servers) s.close();
    throw error;
  }
  return {
    relay,
    async reach(host, port) {
      const server = net.createServer((client) => {
        const upstream = net.connect(dialSocket);
        upstream.write(`${host}:${port}\n`);
        splice(client, upstream, open);
      });
      await listening(server, 0, '127.0.0.1');
      servers.push(server);
      return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    },
    async close() {
      await stopChild(relay);
      // Pools (mysql2, NATS, gRPC) keep connections open: end them, or close() would wait for them.
      for (const s of open) s.destroy();
      for (const s of servers) await new Promise((r) => s.close(() => r(undefined)));
    },
  };
}
