/**
 * The agent's gRPC server: bm.agent.v1.AgentService over the project's
 * grpc-js adapter, every call checked for the agent token first.
 */
import * as grpc from '@grpc/grpc-js';
import { AgentService } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { addService, bindServerWithReceiveWindow, shutdownServer } from '../../proto/rpc/index.ts';
import { agentTokenInterceptor } from '../auth.ts';
import { configDriveHandler } from './config-drive.ts';
import { AgentContext, type AgentConfig } from './context.ts';
import { eraseHandler } from './erase.ts';
import { inventoryHandler } from './inventory.ts';
import { powerHandlers } from './power.ts';
import { readImageHandler } from './read-image.ts';
import { relayImageHandler } from './relay-image.ts';
import { agentStatusMapper } from './status.ts';
import { writeImageHandler } from './write-image.ts';

/** Frames carry up to a few MiB of data; allow 64 MiB so the sender's chunk size is its own choice. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024 + 4096;
/** HTTP/2 receive window per stream and per connection (Node's default is 64 KiB). */
const RECEIVE_WINDOW_BYTES = 8 * 1024 * 1024;

export interface AgentServer {
  readonly server: grpc.Server;
  readonly context: AgentContext;
  readonly port: number;
  stop(graceMs?: number): Promise<void>;
}

export interface ServerOptions {
  /** host:port to listen on, e.g. 0.0.0.0:9999 or 127.0.0.1:0. */
  readonly address: string;
  /** The agent token every call must carry; undefined refuses every call. */
  readonly token: string | undefined;
}

export async function startAgentServer(config: AgentConfig, options: ServerOptions): Promise<AgentServer> {
  const context = new AgentContext(config);
  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_FRAME_BYTES });
  const power = powerHandlers(context);
  addService(
    server,
    AgentService,
    {
      getInventory: inventoryHandler(context),
      writeImage: writeImageHandler(context),
      readImage: readImageHandler(context),
      relayImage: relayImageHandler(context),
      erase: eraseHandler(context),
      writeConfigDrive: configDriveHandler(context),
      reboot: power.reboot,
      powerOff: power.powerOff,
    },
    { interceptors: [agentTokenInterceptor(options.token)], toStatus: agentStatusMapper(config.log) },
  );
  // Image frames are MiB-sized: let the controller keep several in flight while we write.
  const port = await bindServerWithReceiveWindow(server, options.address, RECEIVE_WINDOW_BYTES);
  return { server, context, port, stop: (graceMs = 2000) => shutdownServer(server, graceMs) };
}
