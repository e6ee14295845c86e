/**
 * A TCP port on 127.0.0.1 that a child process can bind next. It is picked
 * below Linux's ephemeral range (ip_local_port_range, 32768–60999 by
 * default): a port the kernel hands out for `listen(0)` comes from that
 * range, and so does every outgoing connection's source port, so between the
 * pick and the child's bind another test's connection could take it (a
 * nats-server route port failed that way in CI with "address already in
 * use"). Below the range only another explicit listener can, and the bind
 * check here sees the ones already up.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';

const LOWEST = 10_000;
const ATTEMPTS = 64;

function ephemeralRangeStart(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const n = Number(low);
    return Number.isInteger(n) && n > 0 ? n : 32_768;
  } catch {
    return 32_768;
  }
}

function listenOnce(port: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' || err.code === 'EACCES' ? resolve(null) : reject(err)));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      const bound = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(bound));
    });
  });
}

export async function freePort(): Promise<number> {
  const below = ephemeralRangeStart();
  if (below - LOWEST >= 1_000) {
    for (let i = 0; i < ATTEMPTS; i++) {
      const port = await listenOnce(LOWEST + Math.floor(Math.random() * (below - LOWEST)));
      if (port !== null) return port;
    }
  }
  // A host whose ephemeral range starts low (or a crowded one): the kernel's pick, as before.
  const port = await listenOnce(0);
  if (port === null) throw new Error('no free TCP port on 127.0.0.1');
  return port;
}
