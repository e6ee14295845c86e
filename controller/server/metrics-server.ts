/**
 * /metrics on its own port ([metrics] listen), so a controller without
 * network boot is scraped too. A port already taken (a second controller on
 * one host) costs a warning, not the controller.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

export async function startMetricsServer(
  listen: string,
  registry: Registry,
  log: Logger,
): Promise<{ port: number; close(): Promise<void> } | null> {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(colon + 1));
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  const bound = await new Promise<boolean>((resolve) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      log.warn({ listen, code: err.code }, 'metrics port unavailable; /metrics is served only on the boot port, if any');
      resolve(false);
    });
    server.listen(port, host, () => resolve(true));
  });
  if (!bound) return null;
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
