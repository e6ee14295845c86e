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
export { CallCancelledError } from './end-of-stream.ts';
export { bindServerWithReceiveWindow, GrpcInternalsChangedError } from './receive-window.ts';
export { connect, isServiceError, type BidiMethod, type ConnectOptions, type RpcConnection } from './client.ts';
export { deserializer, encoded, EncodedMessage, EncodedSchemaMismatchError } from './codec.ts';
export type { DuplexCall, OnSent } from './duplex.ts';
export { quarantine, quarantinedCount, QUARANTINE_MS } from './write-quarantine.ts';
export { GRPC_MESSAGE_HEADER_BYTES, installInPlaceFraming, IN_PLACE_FRAMING_CHANNEL_OPTIONS } from './in-place-framing.ts';
export { tlsCredentials } from './tls.ts';
export { defaultCredentials, forgetServer, trustServer } from './trusted-servers.ts';
export { methodPath, type CallContext, type CallOptions, type ServiceClient, type ServiceHandlers, type TypedService } from './types.ts';
export { status, Metadata, Server } from '@grpc/grpc-js';
