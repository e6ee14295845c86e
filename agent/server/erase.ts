/**
 * Erase: `metadata` (the default) zeroes the first and last MiB, where
 * partition tables and RAID signatures live; `full` zeroes the whole target,
 * after which the agent knows it reads as zeros and a following deploy skips
 * the image's holes. See agent/disk/erase.ts for what each reaches.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { EraseRequest, EraseResponseSchema } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { AgentError } from '../errors.ts';
import { eraseFull, eraseMetadata, openTarget } from '../disk/index.ts';
import type { AgentContext } from './context.ts';

export function eraseHandler(ctx: AgentContext): (request: EraseRequest) => Promise<MessageInitShape<typeof EraseResponseSchema>> {
  return (request) => {
    const mode = request.mode === '' ? 'metadata' : request.mode;
    if (mode !== 'metadata' && mode !== 'full')
      throw new AgentError('invalid-argument', `erase mode must be "metadata" or "full", got "${mode.slice(0, 32)}"`);
    return ctx.exclusive(`erase (${mode})`, async (signal) => {
      const target = await openTarget(await ctx.targetFor(0), { write: true, sysRoot: ctx.config.root });
      try {
        ctx.lastImageSize = undefined;
        // Relays must not forward what an erase is overwriting.
        ctx.endFeed('the disk is being erased');
        if (mode === 'full') {
          ctx.zeroFrom = undefined;
          await eraseFull(target, { signal });
          ctx.zeroFrom = 0;
        } else {
          await eraseMetadata(target);
        }
        ctx.config.log('erased', { target: target.path, mode, size: target.size });
        return {};
      } finally {
        await target.handle.close();
      }
    });
  };
}
