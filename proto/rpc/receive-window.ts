/**
 * grpc-js servers keep Node's default HTTP/2 receive windows (64 KiB per
 * stream and per connection) and offer no option to change them. A client
 * streaming MiB-sized messages then waits on every 64 KiB for the server's
 * event loop to read it and send a WINDOW_UPDATE: on a deploy stream the
 * sender spent most of its time waiting for its writes to drain
 * (docs/performance-notes.md). This widens both windows through two grpc-js
 * internals (the options it creates its HTTP/2 servers with, and those
 * servers); grpc-js is pinned in package-lock.json, and receive-window.test.ts
 * fails if an upgrade moves them.
 */
import type * as http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import { bindServer } from './server.ts';

interface ServerInternals {
  commonServerOptions?: http2.ServerOptions;
  http2Servers?: Map<http2.Http2Server, unknown>;
}

export class GrpcInternalsChangedError extends Error {
  constructor(what: string) {
    super(`grpc-js internals changed (${what} is missing); proto/rpc/receive-window.ts needs updating for this grpc-js version`);
    this.name = 'GrpcInternalsChangedError';
  }
}

/**
 * Binds `server` like bindServer, with `bytes` of HTTP/2 receive window per
 * stream and per connection instead of 64 KiB.
 */
export async function bindServerWithReceiveWindow(server: grpc.Server, address: string, bytes: number): Promise<number> {
  const internals = server as unknown as ServerInternals;
  const options = internals.commonServerOptions;
  if (!options || typeof options !== 'object') throw new GrpcInternalsChangedError('Server.commonServerOptions');
  // SETTINGS_INITIAL_WINDOW_SIZE: the window of every stream the client opens.
  options.settings = { ...options.settings, initialWindowSize: bytes };
  const port = await bindServer(server, address);
  const servers = internals.http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) throw new GrpcInternalsChangedError('Server.http2Servers');
  for (const http2Server of servers.keys()) {
    // The connection-level window is not a setting: it is raised per session.
    http2Server.on('session', (session: http2.ServerHttp2Session) => session.setLocalWindowSize(bytes));
  }
  return port;
}
