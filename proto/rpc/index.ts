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
export { bindServerWithReceiveWindow, GrpcInternalsChangedError } from './receive-window.ts';
export { connect, isServiceError, type BidiMethod, type ConnectOptions, type RpcConnection } from './client.ts';
export { encoded, EncodedMessage, EncodedSchemaMismatchError } from './codec.ts';
export type { DuplexCall } from './duplex.ts';
export { tlsCredentials } from './tls.ts';
export { defaultCredentials, forgetServer, trustServer } from './trusted-servers.ts';
export type { CallContext, CallOptions, ServiceClient, ServiceHandlers, TypedService } from './types.ts';
export { status, Metadata, Server } from '@grpc/grpc-js';
export { deserializer } from './codec.ts';
export { methodPath } from './types.ts';
