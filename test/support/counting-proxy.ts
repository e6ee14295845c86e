/**
 * A loopback TCP forwarder that counts the connections made through it: a
 * test puts it between a client and a real server to learn how many
 * connections the client opened, without reaching into either.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface CountingProxy {
  /** 127.0.0.1:port to dial instead of the target. */
  readonly address: string;
  /** Connections accepted so far. */
  connections(): number;
  /** Breaks every connection open now (as a dropped network would); new ones are still accepted. */
  breakConnections(): void;
  close(): Promise<void>;
}

export async function startCountingProxy(targetPort: number): Promise<CountingProxy> {
  let accepted = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    accepted++;
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${port}`,
    connections: () => accepted,
    breakConnections: () => {
      for (const socket of sockets) socket.resetAndDestroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
