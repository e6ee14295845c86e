/**
 * WriteImage: the controller streams the image as ordered frames; the agent
 * writes them with the disk writer (agent/disk/writer.ts), acknowledges each
 * committed offset (after an fdatasync) so the controller can checkpoint it,
 * and ends with the sha256 of the image's bytes on the target.
 *
 * The first frame carries `start` (image size, resume offset, commit
 * interval, image id); the agent answers it with an acknowledgement of
 * where the stream continues once the target is open and known to hold the
 * image: the resume offset, or further when this agent has already committed
 * more of the same image (a peer taking over resumes from the checkpoint the
 * dead controller last stored, which lags what the agent made durable; all
 * it would send up to there is bytes the disk already holds). A new stream supersedes one still running: after a broken
 * connection the old call may not have noticed yet, and a resume must not
 * wait for it. The abandoned writer's knowledge of which bytes still read
 * as zeros carries over to the next, in this process only.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { ImageFrame as WireFrame, WriteImageAckSchema } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import type { CallContext } from '../../proto/rpc/index.ts';
import { DigestAlgorithm, isDigestAlgorithm } from '../../proto/digest/index.ts';
import { AgentError, FrameError } from '../errors.ts';
import { openImageWriter, type DigestMethod, type ImageWriter } from '../disk/index.ts';
import { MAX_COMMIT_INTERVAL, MIN_COMMIT_INTERVAL, type AgentContext } from './context.ts';
import { ImageFeed } from './image-feed.ts';
import { installPooledDecoder, releaseFrameBuffer } from './pooled-decoder.ts';
import { safeNumber } from './convert.ts';
import { AsyncQueue, anySignal, nextOrAbort } from './queue.ts';
import { youngGc } from './young-gc.ts';

type Ack = MessageInitShape<typeof WriteImageAckSchema>;

function commitInterval(ctx: AgentContext, requested: bigint): number {
  if (requested === 0n) return ctx.config.commitIntervalBytes;
  const value = safeNumber('commit_interval_bytes', requested);
  return Math.min(MAX_COMMIT_INTERVAL, Math.max(MIN_COMMIT_INTERVAL, value));
}

function digestFor(ctx: AgentContext, resumeOffset: number): DigestMethod {
  const policy = ctx.config.digest;
  if (policy === 'auto') return resumeOffset === 0 ? 'as-written' : 'read-back';
  // An as-written digest cannot cover bytes an earlier stream wrote.
  return policy === 'as-written' && resumeOffset > 0 ? 'read-back' : policy;
}

async function writeStream(
  ctx: AgentContext,
  requests: AsyncIterable<WireFrame>,
  signal: AbortSignal,
  acks: AsyncQueue<Ack>,
): Promise<void> {
  const iterator = requests[Symbol.asyncIterator]();
  const first = await nextOrAbort(iterator, signal);
  if (first.done) throw new FrameError('malformed', 'the stream ended before its first frame');
  const start = first.value.start;
  if (!start) throw new FrameError('malformed', 'the first frame must carry start (image size and resume offset)');
  const imageSize = safeNumber('image_size', start.imageSize);
  const resumeOffset = safeNumber('resume_offset', start.resumeOffset);
  if (imageSize === 0) throw new AgentError('invalid-argument', 'image_size must be positive');
  const digestAlgorithm = start.digestAlgorithm === '' ? DigestAlgorithm.sha256 : start.digestAlgorithm;
  if (!isDigestAlgorithm(digestAlgorithm)) {
    throw new AgentError(
      'invalid-argument',
      `unknown digest algorithm "${digestAlgorithm.slice(0, 64)}": use "${DigestAlgorithm.sha256}" or "${DigestAlgorithm.blocks}"`,
    );
  }
  const imageKey = `${start.imageId}/${imageSize}`;
  // Only a sender that names the image reads the first acknowledgement as where to continue.
  const known = start.imageId !== '' && ctx.committedImage?.imageKey === imageKey ? ctx.committedImage.offset : 0;
  const startOffset = Math.max(resumeOffset, Math.min(known, imageSize));
  const path = await ctx.targetFor(imageSize);
  const feed = feedFor(ctx, start.imageId, imageSize, path, startOffset);
  const writer: ImageWriter = await openImageWriter(path, {
    imageSize,
    resumeOffset: startOffset,
    ...(ctx.zeroFrom !== undefined ? { knownZeroFrom: ctx.zeroFrom } : {}),
    fsyncIntervalBytes: commitInterval(ctx, start.commitIntervalBytes),
    digest: digestFor(ctx, startOffset),
    digestAlgorithm,
    sysRoot: ctx.config.root,
    onCommit: (committedOffset) => {
      feed?.commit(committedOffset);
      acks.push({ committedOffset: BigInt(committedOffset) });
    },
  });
  // Until this writer ends, nothing is known about the bytes after its start offset.
  ctx.zeroFrom = undefined;
  ctx.committedImage = undefined;
  ctx.received.beginStream(imageKey);
  // The first acknowledgement says the target is open and the image fits: the sender holds its data until then.
  acks.push({ committedOffset: BigInt(startOffset) });
  ctx.lastImageSize = undefined;
  ctx.config.log('write-image started', {
    target: path,
    imageSize,
    resumeOffset,
    startOffset,
    digest: writer.digestMethod,
    digestAlgorithm,
  });
  let finished = false;
  try {
    // The start frame carries no bytes; when the stream continues past its offset, there is nothing in it to write.
    let frame: WireFrame | undefined = startOffset > resumeOffset && first.value.data.length === 0 ? undefined : first.value;
    if (!frame) {
      const next: IteratorResult<WireFrame> = await nextOrAbort(iterator, signal);
      frame = next.done ? undefined : next.value;
    }
    while (frame) {
      const offset = safeNumber('offset', frame.offset);
      const zeroLength = safeNumber('zero_length', frame.zeroLength);
      const data = frame.data;
      feed?.record(offset, data.length > 0 ? data.length : zeroLength, data.length > 0);
      ctx.received.data(offset, data.length);
      youngGc.received(data.length);
      // The frame's bytes live in a pooled receive buffer (pooled-decoder.ts): back to the pool once written.
      await writer.write({
        offset,
        ...(data.length > 0 ? { data, onDone: () => releaseFrameBuffer(data) } : {}),
        ...(zeroLength > 0 ? { zeroLength } : {}),
      });
      const next: IteratorResult<WireFrame> = await nextOrAbort(iterator, signal);
      frame = next.done ? undefined : next.value;
    }
    const result = await writer.finish({ signal });
    finished = true;
    feed?.commit(result.committedOffset);
    ctx.received.finished();
    ctx.lastImageSize = imageSize;
    acks.push({
      committedOffset: BigInt(result.committedOffset),
      done: true,
      sha256: result.sha256,
      digestMethod: result.digestMethod,
      digestAlgorithm: result.digestAlgorithm,
    });
    ctx.config.log('write-image finished', {
      target: path,
      imageSize,
      bytesWritten: result.bytesWritten,
      zeroBytesSkipped: result.zeroBytesSkipped,
      // Written with O_DIRECT, past the page cache (agent/disk/direct-io.ts); the rest went through it.
      directBytes: result.directBytes,
      digest: result.digestMethod,
      // Over every stream of this deploy: what a resume cost (tests and the takeover bench read these).
      ...ctx.received.snapshot(),
      // Since the agent started: the scavenges paced by received bytes (young-gc.ts), 0 without --expose-gc.
      youngGcs: youngGc.runs,
    });
  } finally {
    if (!finished) {
      // The stream broke (its controller died, or a new one superseded it): what reached the disk is kept, durable.
      await writer.commitWritten().catch((error: unknown) =>
        ctx.config.log('write-image could not commit what it wrote', {
          target: path,
          committedOffset: writer.committedOffset,
          error: error instanceof Error ? error.message : String(error),
        }),
      );
      await writer.close();
      ctx.config.log('write-image stopped', {
        target: path,
        committedOffset: writer.committedOffset,
        nextOffset: writer.nextOffset,
        ...ctx.received.snapshot(),
      });
    }
    ctx.zeroFrom = writer.readsAsZerosFrom;
    ctx.committedImage = { imageKey, offset: writer.committedOffset };
  }
}

/**
 * The feed relays read (image-feed.ts): kept when this stream resumes the
 * image it describes, replaced otherwise. A stream without an image id
 * cannot be relayed (a relay must know it serves the image it is asked for).
 */
function feedFor(ctx: AgentContext, imageId: string, imageSize: number, path: string, resumeOffset: number): ImageFeed | undefined {
  if (imageId !== '' && ctx.feed?.sameImage(imageId, imageSize, path)) {
    ctx.feed.restart(resumeOffset);
    return ctx.feed;
  }
  ctx.endFeed('another image is being written');
  if (imageId === '') return undefined;
  ctx.feed = new ImageFeed(imageId, imageSize, path, resumeOffset);
  return ctx.feed;
}

export function writeImageHandler(ctx: AgentContext): (requests: AsyncIterable<WireFrame>, call: CallContext) => AsyncIterable<Ack> {
  installPooledDecoder();
  return async function* writeImage(requests, call) {
    const acks = new AsyncQueue<Ack>();
    const work = ctx.superseding('write-image', (signal) => writeStream(ctx, requests, anySignal(signal, call.signal), acks));
    work.then(
      () => acks.close(),
      (error: unknown) => acks.fail(error),
    );
    yield* acks;
  };
}
