/**
 * The controller's connection to one deploy agent: every call carries the
 * node's agent token as a bearer token. Unary and server-stream calls go
 * through the project's adapter; WriteImage gets its own sender (stream.ts)
 * because it needs to know when bytes have left for the socket, which the
 * adapter's pump does not tell.
 */
import * as grpc from '@grpc/grpc-js';
import { AgentService } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { connect, type RpcConnection, type ServiceClient } from '../../proto/rpc/index.ts';
import { DEFAULT_TUNING, type StreamTuning } from './tuning.ts';

export type AgentClient = ServiceClient<typeof AgentService>;

export interface AgentConnection {
  readonly address: string;
  readonly client: AgentClient;
  /** The raw channel, for WriteImage's own sender. */
  readonly channel: grpc.Client;
  readonly metadata: grpc.Metadata;
  close(): void;
}

/** ReadImage chunks and acknowledgements are small; leave room anyway. */
const MAX_RECEIVE_BYTES = 16 * 1024 * 1024;

export function connectAgent(address: string, token: string, tuning: StreamTuning = DEFAULT_TUNING): AgentConnection {
  const channelOptions: grpc.ChannelOptions = {
    'grpc-node.flow_control_window': tuning.flowControlWindow,
    'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
    'grpc.max_send_message_length': tuning.chunkBytes + 64 * 1024,
    'grpc.enable_retries': 0,
    // A deploy may legitimately go quiet while the agent fdatasyncs; keepalive notices a dead peer.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 0,
  };
  const rpc: RpcConnection = connect(address, { metadata: { authorization: `Bearer ${token}` }, channelOptions });
  const channel = new grpc.Client(address, grpc.credentials.createInsecure(), channelOptions);
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return {
    address,
    client: rpc.client(AgentService),
    channel,
    metadata,
    close() {
      rpc.close();
      channel.close();
    },
  };
}
