/**
 * ReadImage: bytes of the target as a server stream, for verification and,
 * later, snapshots. Length 0 means up to the end of the last image written
 * (or of the target when no image is known).
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { ImageChunkSchema, ReadImageRequest } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import type { CallContext } from '../../proto/rpc/index.ts';
import { AgentError } from '../errors.ts';
import { readTargetChunks, openTarget } from '../disk/index.ts';
import type { AgentContext } from './context.ts';
import { safeNumber } from './convert.ts';

/** Below grpc-js's default 4 MiB message limit, with room for the framing. */
export const READ_CHUNK_BYTES = 1024 * 1024;

type Chunk = MessageInitShape<typeof ImageChunkSchema>;

export function readImageHandler(ctx: AgentContext): (request: ReadImageRequest, call: CallContext) => AsyncIterable<Chunk> {
  return async function* readImage(request, call) {
    const offset = safeNumber('offset', request.offset);
    const requested = safeNumber('length', request.length);
    const target = await openTarget(await ctx.targetFor(0), { sysRoot: ctx.config.root });
    try {
      const end = requested > 0 ? offset + requested : (ctx.lastImageSize ?? target.size);
      if (offset > end || end > target.size) {
        throw new AgentError('out-of-range', `cannot read [${offset}, ${end}) of a target of ${target.size} bytes`, {
          offset,
          end,
          size: target.size,
        });
      }
      let position = offset;
      for await (const chunk of readTargetChunks(target.handle, offset, end - offset, {
        chunkBytes: READ_CHUNK_BYTES,
        signal: call.signal,
      })) {
        // The reader reuses its buffer: the message gets its own copy.
        yield { offset: BigInt(position), data: chunk.slice() };
        position += chunk.length;
      }
    } finally {
      await target.handle.close();
    }
  };
}
