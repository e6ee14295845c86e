/** bmctl's one way to the controller: the gRPC API, never the database or NATS. */
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { apiTarget } from './options.ts';

export interface ApiOptions {
  readonly url?: string;
  readonly token?: string;
}

export function apiConnection(opts: ApiOptions): RpcConnection {
  const { url, token } = apiTarget(opts);
  return connect(url.replace(/^(grpc|http):\/\//, ''), token ? { metadata: { authorization: `Bearer ${token}` } } : {});
}

/** Opens the API connection, runs `fn` on it, and closes it however `fn` ends. */
export async function withApi<T>(opts: ApiOptions, fn: (conn: RpcConnection) => Promise<T>): Promise<T> {
  const conn = apiConnection(opts);
  try {
    return await fn(conn);
  } finally {
    conn.close();
  }
}
