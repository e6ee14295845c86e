/**
 * WriteConfigDrive: builds the config-2 ISO 9660 drive from the JSON the
 * controller sends and writes it at the end of the disk (placement.ts). The
 * drive must not overlap the image, so the agent must know where the image
 * ends: from the request, or from the image it wrote itself.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { WriteConfigDriveRequest, WriteConfigDriveResponseSchema } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { ConfigDriveError } from '../errors.ts';
import { buildConfigDrive, writeConfigDrive } from '../configdrive/index.ts';
import { openTarget } from '../disk/index.ts';
import type { AgentContext } from './context.ts';
import { safeNumber } from './convert.ts';

const EMPTY_NETWORK_DATA = '{"links":[],"networks":[],"services":[]}';

export function configDriveHandler(
  ctx: AgentContext,
): (request: WriteConfigDriveRequest) => Promise<MessageInitShape<typeof WriteConfigDriveResponseSchema>> {
  return (request) =>
    ctx.exclusive('write-config-drive', async () => {
      const imageSize = safeNumber('image_size', request.imageSize) || ctx.lastImageSize;
      if (imageSize === undefined) {
        throw new ConfigDriveError(
          'failed-precondition',
          'where the image ends is unknown (no image written by this agent): send image_size',
        );
      }
      const drive = buildConfigDrive({
        metaData: request.metaDataJson,
        networkData: request.networkDataJson === '' ? EMPTY_NETWORK_DATA : request.networkDataJson,
        userData: request.userData,
      });
      const target = await openTarget(await ctx.targetFor(imageSize), { write: true, sysRoot: ctx.config.root });
      try {
        const placement = await writeConfigDrive(target, drive, imageSize);
        // The drive's bytes no longer read as zeros; be conservative about the rest too.
        ctx.zeroFrom = undefined;
        ctx.config.log('config drive written', { target: target.path, offset: placement.offset, size: placement.length });
        return { offset: BigInt(placement.offset), size: BigInt(placement.length) };
      } finally {
        await target.handle.close();
      }
    });
}
