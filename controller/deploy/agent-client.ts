/**
 * The controller's connection to one deploy agent: one HTTP/2 connection
 * through the project's rpc adapter, every call carrying the node's agent
 * token as a bearer token. WriteImage runs on it as a duplex call
 * (stream.ts), so the image stream and the unary calls share it.
 */
import * as grpc from '@grpc/grpc-js';
import { AgentService } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { connect, type RpcConnection, type ServiceClient } from '../../proto/rpc/index.ts';
import { DEFAULT_TUNING, type StreamTuning } from './tuning.ts';

export type AgentClient = ServiceClient<typeof AgentService>;

export interface AgentConnection {
  readonly address: string;
  readonly client: AgentClient;
  /** The connection itself, for calls the typed client does not drive (WriteImage's duplex call). */
  readonly rpc: RpcConnection;
  close(): void;
}

/** ReadImage chunks and acknowledgements are small; leave room anyway. */
const MAX_RECEIVE_BYTES = 16 * 1024 * 1024;

export function connectAgent(address: string, token: string, tuning: StreamTuning = DEFAULT_TUNING): AgentConnection {
  const channelOptions: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
    'grpc.max_send_message_length': tuning.chunkBytes + 64 * 1024,
    'grpc.enable_retries': 0,
    // A deploy may legitimately go quiet while the agent fdatasyncs; keepalive notices a dead peer.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 0,
  };
  const rpc = connect(address, {
    // Agents serve plaintext, authenticated by the node's token; said here so that no TLS setting of
    // this process (trustServer) can turn the image stream into a TLS one.
    credentials: grpc.credentials.createInsecure(),
    metadata: { authorization: `Bearer ${token}` },
    receiveWindowBytes: tuning.flowControlWindow,
    channelOptions,
    // Data frames carry room for gRPC's header (stream.ts): sent without grpc-js's copy.
    inPlaceFraming: true,
  });
  return {
    address,
    client: rpc.client(AgentService),
    rpc,
    close() {
      rpc.close();
    },
  };
}
