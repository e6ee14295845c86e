/** bmctl's one way to the controller: the gRPC API, never the database or NATS. */
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';

export interface ApiOptions {
  readonly url?: string;
  readonly token?: string;
}

export function apiConnection(opts: ApiOptions): RpcConnection {
  const url = opts.url ?? process.env.BM_URL ?? '127.0.0.1:6385';
  const token = opts.token ?? process.env.BM_TOKEN;
  return connect(url.replace(/^(grpc|http):\/\//, ''), token ? { metadata: { authorization: `Bearer ${token}` } } : {});
}
