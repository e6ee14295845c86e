/**
 * The conductor's part of a deploy and of a delete, played by the test until
 * `bmctl boot` / `bmctl instance delete` exist (the lead is building them):
 * the same steps test/lab/lab.ts takes, through the controller's API for
 * power and boot device (so the native IPMI driver talks to ipmi_sim) and
 * the agent's gRPC server for the disk. Swap these two functions for the
 * CLI when it lands; nothing else in the e2e test drives the deploy.
 */
import type { RowDataPacket } from 'mysql2/promise';
import { AgentService } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import type { DbHandle } from '../../db/connect.ts';
import { MysqlAgentTokens } from '../../controller/agents/tokens.ts';
import { MysqlDeployCheckpoints } from '../../controller/conductor/deploy-checkpoint.ts';
import { deployImage } from '../../controller/deploy/deploy.ts';
import { expectedDigestOf } from '../../controller/deploy/digest.ts';
import type { ImageFormat } from '../../controller/images/extents.ts';
import { LocalBlobStore } from '../../controller/images/local-blob-store.ts';
import { openImageSource } from '../../controller/images/open.ts';
import type { Image } from '../../proto/gen/bm/v1/image_pb.js';

export type Phase = 'power-on' | 'agent-callback' | 'image-written' | 'config-drive-written' | 'rebooted' | 'erased';

export interface DriveContext {
  readonly api: RpcConnection;
  readonly db: DbHandle;
  readonly nodeUuid: string;
  /** The controller's image store directory ([images] store_path). */
  readonly imageStore: string;
  /** The agent token the machine's ramdisk booted with, once it has fetched its script. */
  readonly agentToken: () => Promise<string | null>;
  /** Turns the agent's address (as it heartbeats it) into one this process can dial. */
  readonly reach: (agentAddress: string) => Promise<string>;
  readonly onPhase?: (phase: Phase) => void;
  readonly timeoutMs?: number;
}

export interface DeployRequest {
  readonly image: Image;
  readonly format: ImageFormat;
  readonly userData: string;
  readonly metaData: Readonly<Record<string, unknown>>;
}

async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Marks the node, PXE-boots it into the ramdisk and waits for its agent; returns a dialable address and the token. */
async function bootRamdisk(ctx: DriveContext, provisionState: 'deploying' | 'cleaning', power: 'on' | 'reboot'): Promise<{ address: string; token: string; agent: RpcConnection }> {
  const nodes = ctx.api.client(NodeService);
  const timeoutMs = ctx.timeoutMs ?? 180_000;
  await ctx.db.pool.query('UPDATE nodes SET provision_state = ?, agent_address = NULL, agent_seen_at = NULL WHERE uuid = ?', [provisionState, ctx.nodeUuid]);
  await nodes.setBootDevice({ id: ctx.nodeUuid, device: 'pxe', persistent: false, uefi: false });
  await nodes.setPowerState({ id: ctx.nodeUuid, target: power });
  ctx.onPhase?.('power-on');
  const agentAddress = await waitFor('the agent heartbeat', timeoutMs, async () => {
    const [rows] = await ctx.db.pool.query<RowDataPacket[]>('SELECT agent_address FROM nodes WHERE uuid = ? AND agent_seen_at IS NOT NULL', [ctx.nodeUuid]);
    return (rows[0]?.agent_address as string | undefined) ?? null;
  });
  ctx.onPhase?.('agent-callback');
  const token = await waitFor('the agent token on the wire', 10_000, ctx.agentToken);
  const address = await ctx.reach(agentAddress);
  return { address, token, agent: connect(address, { metadata: { authorization: `Bearer ${token}` } }) };
}

export async function driveDeploy(ctx: DriveContext, request: DeployRequest): Promise<void> {
  const { image } = request;
  const { address, token, agent } = await bootRamdisk(ctx, 'deploying', 'on');
  try {
    const checkpoints = new MysqlDeployCheckpoints(ctx.db.db);
    const blobs = new LocalBlobStore(ctx.imageStore);
    const opened = await openImageSource(await blobs.openRandomAccess(image.sha256), request.format);
    try {
      const resumeOffset = await checkpoints.begin(ctx.nodeUuid, image.rawSha256);
      await deployImage({
        nodeUuid: ctx.nodeUuid,
        agentAddress: address,
        agentToken: token,
        source: opened.source,
        expected: expectedDigestOf(image),
        resumeOffset,
        checkpoint: (offset) => checkpoints.record(ctx.nodeUuid, image.rawSha256, offset),
      });
      await checkpoints.clear(ctx.nodeUuid);
    } finally {
      await opened.close();
    }
    ctx.onPhase?.('image-written');
    await agent.client(AgentService).writeConfigDrive(
      { metaDataJson: JSON.stringify(request.metaData), userData: Buffer.from(request.userData), networkDataJson: '{}', imageSize: image.virtualSize },
      { timeoutMs: 60_000 },
    );
    ctx.onPhase?.('config-drive-written');
  } finally {
    agent.close();
  }
  await new MysqlAgentTokens(ctx.db.db).revoke(ctx.nodeUuid);
  await ctx.db.pool.query("UPDATE nodes SET provision_state = 'active' WHERE uuid = ?", [ctx.nodeUuid]);
  const nodes = ctx.api.client(NodeService);
  await nodes.setBootDevice({ id: ctx.nodeUuid, device: 'disk', persistent: true, uefi: false });
  await nodes.setPowerState({ id: ctx.nodeUuid, target: 'reboot' });
  ctx.onPhase?.('rebooted');
}

/** A delete: back into the ramdisk, erase the disk's metadata, power off, available again. */
export async function driveUndeploy(ctx: DriveContext): Promise<void> {
  const { agent } = await bootRamdisk(ctx, 'cleaning', 'reboot');
  try {
    await agent.client(AgentService).erase({ mode: 'metadata' }, { timeoutMs: 120_000 });
    ctx.onPhase?.('erased');
  } finally {
    agent.close();
  }
  await new MysqlAgentTokens(ctx.db.db).revoke(ctx.nodeUuid);
  await ctx.db.pool.query("UPDATE nodes SET provision_state = 'available', agent_address = NULL, agent_seen_at = NULL WHERE uuid = ?", [ctx.nodeUuid]);
  await ctx.api.client(NodeService).setPowerState({ id: ctx.nodeUuid, target: 'off' });
}
