/**
 * Runs inside a test's network namespace (`ip netns exec NS node ns-relay.ts`)
 * and joins it to the host through Unix sockets, which cross namespaces
 * because they live in the file system:
 *   --forward HOST:PORT=SOCKET   listen on TCP HOST:PORT in the namespace,
 *                                carry each connection to SOCKET (the host
 *                                side connects it to MariaDB, NATS ...)
 *   --dial SOCKET                listen on SOCKET; a client's first line
 *                                "host:port\n" names the TCP address in the
 *                                namespace to connect it to (the API, an agent)
 * Prints "relay ready" once everything listens.
 */
import net from 'node:net';
import { parseArgs } from 'node:util';
import { splice } from './splice.ts';

function hostPort(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  const port = Number(text.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`expected host:port, got "${text}"`);
  return { host: text.slice(0, at), port };
}

function listen(server: net.Server, ...args: unknown[]): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    (server.listen as (...a: unknown[]) => void)(...args, () => resolve());
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { forward: { type: 'string', multiple: true, default: [] }, dial: { type: 'string' } },
    strict: true,
  });
  for (const spec of values.forward) {
    const eq = spec.indexOf('=');
    const { host, port } = hostPort(spec.slice(0, eq));
    const socketPath = spec.slice(eq + 1);
    await listen(
      net.createServer((client) => splice(client, net.connect(socketPath))),
      port,
      host,
    );
  }
  if (values.dial) {
    const server = net.createServer((client) => {
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk]);
        const nl = head.indexOf(10);
        if (nl < 0) {
          if (head.length > 256) client.destroy();
          return;
        }
        client.off('data', onData);
        client.pause();
        const { host, port } = hostPort(head.subarray(0, nl).toString());
        const upstream = net.connect(port, host);
        const rest = head.subarray(nl + 1);
        if (rest.length > 0) upstream.write(rest);
        splice(client, upstream);
        client.resume();
      };
      client.on('data', onData);
      client.once('error', () => client.destroy());
    });
    await listen(server, values.dial);
  }
  process.stdout.write('relay ready\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`ns-relay: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
