/**
 * The chunks of one JetStream object store object, read and written
 * directly. The layout is the object store's (ADR-20): an object's bytes are
 * the messages on `$O.<bucket>.C.<nuid>`, in order. Reading them with an
 * ordered consumer paces the fetch by whoever consumes it (the cache's disk
 * writes); the client's own get() pushes into a stream without bound.
 */
import type { FileHandle } from 'node:fs/promises';
import type { JetStreamClient } from '@nats-io/jetstream';
import { BlobStoreUnavailableError } from './blob-store.ts';

/** Chunks in flight from the server during a fetch (bounds the memory one fetch holds). */
const FETCH_WINDOW_CHUNKS = 8;
/** The server drops a fetch's consumer this long after its last use (an ordered consumer re-creates itself after a longer pause). */
const CONSUMER_IDLE_MS = 10_000;

export interface ObjectRef {
  readonly bucket: string;
  readonly sha256: string;
  readonly nuid: string;
  readonly size: number;
  /** The longest wait for the next chunk before the fetch gives up. */
  readonly timeoutMs: number;
}

/**
 * A file as a pull-driven stream of chunk-sized reads: the client asks for
 * the next piece only after publishing the last, so an upload holds about
 * one chunk in memory however large the image.
 */
export function fileChunks(file: FileHandle, chunkBytes: number): ReadableStream<Uint8Array> {
  let position = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const buffer = Buffer.allocUnsafe(chunkBytes);
        const { bytesRead } = await file.read(buffer, 0, chunkBytes, position);
        if (bytesRead === 0) {
          controller.close();
          return;
        }
        position += bytesRead;
        controller.enqueue(buffer.subarray(0, bytesRead));
      },
    },
    { highWaterMark: 0 },
  );
}

/** Streams an object's chunks into `write`, in order, one awaited write at a time. */
export async function fetchObjectChunks(js: JetStreamClient, ref: ObjectRef, write: (chunk: Uint8Array) => Promise<void>): Promise<void> {
  if (ref.size === 0) return;
  const context = { bucket: ref.bucket, sha256: ref.sha256 };
  let messages: Awaited<ReturnType<Awaited<ReturnType<JetStreamClient['consumers']['get']>>['consume']>>;
  try {
    const consumer = await js.consumers.get(`OBJ_${ref.bucket}`, {
      filter_subjects: `$O.${ref.bucket}.C.${ref.nuid}`,
      inactive_threshold: CONSUMER_IDLE_MS,
    });
    messages = await consumer.consume({ max_messages: FETCH_WINDOW_CHUNKS });
  } catch (err) {
    throw new BlobStoreUnavailableError(`cannot fetch blob ${ref.sha256} from bucket ${ref.bucket}`, context, err);
  }
  // A chunk that never comes (purged under us, NATS gone) must not hang a deploy forever; time spent writing does not count.
  let stalled = false;
  const arm = (): NodeJS.Timeout =>
    setTimeout(() => {
      stalled = true;
      messages.stop();
    }, ref.timeoutMs);
  let watchdog = arm();
  let received = 0;
  try {
    for await (const m of messages) {
      clearTimeout(watchdog);
      await write(m.data);
      received += m.data.length;
      if (received >= ref.size || m.info.pending === 0) break;
      watchdog = arm();
    }
  } finally {
    clearTimeout(watchdog);
    messages.stop();
  }
  if (stalled)
    throw new BlobStoreUnavailableError(
      `fetching blob ${ref.sha256} from bucket ${ref.bucket}`,
      { ...context, received, size: ref.size },
      new Error(`no chunk for ${ref.timeoutMs} ms`),
    );
}
