/** The grpc-js adapter's public face. */
export {
  addService,
  bindServer,
  RequestTooLargeError,
  shutdownServer,
  type ServeOptions,
  type ServerInterceptor,
  type StatusError,
} from './server.ts';
export { connect, isServiceError, type ConnectOptions, type RpcConnection } from './client.ts';
export { tlsCredentials } from './tls.ts';
export { defaultCredentials, forgetServer, trustServer } from './trusted-servers.ts';
export type { CallContext, CallOptions, ServiceClient, ServiceHandlers, TypedService } from './types.ts';
export { status, Metadata, Server } from '@grpc/grpc-js';
