/**
 * A BlobStore on the NATS JetStream object store, so every controller of a
 * cluster serves every image (replicated by a NATS cluster with `replicas`).
 * Objects are named by their sha256.
 *
 * put() stages the upload in the local cache directory, hashing it, and
 * publishes it only once the digest and size are known to be right: a
 * refused or broken upload never reaches NATS, and the uploading controller
 * keeps the file as its cached copy. Reads go through that cache (blob-cache.ts):
 * an object is fetched once, verified against its name, then served from
 * disk with positioned reads, which the qcow2 reader needs.
 *
 * Fetches read the chunks directly (object-chunks.ts), paced by the disk.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { jetstream, JetStreamApiCodes, JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import { Base64UrlPaddedCodec, Objm, setSha256Backend, StorageType, type ObjectInfo, type ObjectStore } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { BmError, ValidationError } from '../errors.ts';
import { BlobCache, type StagedFile } from './blob-cache.ts';
import { fetchObjectChunks, fileChunks } from './object-chunks.ts';
import {
  BlobCorruptError,
  BlobNotFoundError,
  BlobStoreUnavailableError,
  checkSha256,
  resolveRange,
  type BlobInfo,
  type BlobRange,
  type BlobStore,
  type PutOptions,
} from './blob-store.ts';
import { FileHandleReader, type ClosableRandomAccessReader } from './random-access.ts';

// The client hashes every chunk it sends and receives; Node's native sha256 is several times the pure-JS default.
setSha256Backend('native');

/** Object chunks: the client clamps this to the server's max_payload (1 MiB by default). */
const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** Per JetStream request; also how long a fetch waits for its next chunk, and how long a read waits before serving a cached copy while NATS is away. */
const DEFAULT_TIMEOUT_MS = 10_000;
const BUCKET_PATTERN = /^[A-Za-z0-9_-]{1,200}$/;

export interface JetStreamBlobStoreOptions {
  /** The object store bucket, already carrying the cluster's prefix (see bucketName). */
  readonly bucket: string;
  /** Copies kept by the NATS cluster; 1 for a single server. Applied only when the bucket is created. */
  readonly replicas: number;
  /** The local cache directory of verified copies. */
  readonly cacheDir: string;
  readonly chunkBytes?: number;
  /** Per request, and the longest a fetch may wait for its next chunk. */
  readonly timeoutMs?: number;
}

/**
 * The bucket of one cluster: the [nats] prefix keeps two clusters on one
 * NATS apart, as it does for subjects. Bucket names allow no dots.
 */
export function bucketName(natsPrefix: string, bucket: string): string {
  const name = `${natsPrefix.replaceAll('.', '_')}_${bucket}`;
  if (!BUCKET_PATTERN.test(name))
    throw new ValidationError('images.bucket', `${JSON.stringify(name)} is not a valid object store bucket (letters, digits, "_", "-")`);
  return name;
}

/** The object store's digest format for a hex sha256 ("SHA-256=" + padded base64url). */
function objectDigest(sha256Hex: string): string {
  return `SHA-256=${Base64UrlPaddedCodec.encode(Buffer.from(sha256Hex, 'hex'))}`;
}

function isLive(info: ObjectInfo | null): info is ObjectInfo {
  return info !== null && !info.deleted;
}

export class JetStreamBlobStore implements BlobStore {
  readonly bucket: string;
  readonly cache: BlobCache;
  readonly #js: JetStreamClient;
  readonly #objects: ObjectStore;
  readonly #chunkBytes: number;
  readonly #timeoutMs: number;
  readonly #ownConnection: NatsConnection | null;

  private constructor(js: JetStreamClient, objects: ObjectStore, options: JetStreamBlobStoreOptions, ownConnection: NatsConnection | null) {
    this.bucket = options.bucket;
    this.cache = new BlobCache(options.cacheDir);
    this.#js = js;
    this.#objects = objects;
    this.#chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#ownConnection = ownConnection;
  }

  /** Opens the bucket (creating it if missing) on a connection the caller owns. */
  static async open(nc: NatsConnection, options: JetStreamBlobStoreOptions): Promise<JetStreamBlobStore> {
    return JetStreamBlobStore.#open(nc, options, null);
  }

  /**
   * Opens the bucket on a connection of its own, closed by close(): image
   * transfers of gigabytes then never queue ahead of events and heartbeats.
   */
  static async connect(url: string, options: JetStreamBlobStoreOptions & { readonly name?: string }): Promise<JetStreamBlobStore> {
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: url.split(','),
        name: options.name ?? 'bm-blobs',
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
      });
    } catch (err) {
      throw new BlobStoreUnavailableError(`cannot connect to NATS at ${url}`, { url, bucket: options.bucket }, err);
    }
    try {
      return await JetStreamBlobStore.#open(nc, options, nc);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  static async #open(nc: NatsConnection, options: JetStreamBlobStoreOptions, own: NatsConnection | null): Promise<JetStreamBlobStore> {
    if (!BUCKET_PATTERN.test(options.bucket))
      throw new ValidationError('images.bucket', `${JSON.stringify(options.bucket)} is not a valid bucket`);
    const js = jetstream(nc, { timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS });
    let objects: ObjectStore;
    try {
      objects = await new Objm(js).create(options.bucket, { replicas: options.replicas, storage: StorageType.File });
    } catch (err) {
      throw new BlobStoreUnavailableError(
        `cannot open object store bucket ${options.bucket}`,
        { bucket: options.bucket, replicas: options.replicas },
        err,
      );
    }
    return new JetStreamBlobStore(js, objects, options, own);
  }

  /** The bucket's replica count as NATS keeps it (it may differ from the configured one if the bucket existed before). */
  async replicas(): Promise<number> {
    return (await this.#objects.status()).replicas;
  }

  async put(body: AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<BlobInfo> {
    if (options.expectedSha256 !== undefined) checkSha256(options.expectedSha256);
    const staged = await this.cache.stage(body, options);
    try {
      if (options.expectedSha256 !== undefined && options.expectedSha256 !== staged.sha256) {
        throw new ValidationError('sha256', `content hashes to ${staged.sha256}, not the expected ${options.expectedSha256}`, {
          expected: options.expectedSha256,
          actual: staged.sha256,
        });
      }
      await this.#publish(staged);
      await this.cache.adopt(staged);
    } catch (err) {
      await staged.discard();
      throw err;
    }
    return { sha256: staged.sha256, size: staged.size };
  }

  async #publish(staged: StagedFile): Promise<void> {
    const { sha256, size } = staged;
    const digest = objectDigest(sha256);
    const existing = await this.#info(sha256);
    if (isLive(existing) && existing.digest === digest && existing.size === size) return;
    const file = await open(staged.path, 'r');
    try {
      const stored = await this.#objects.put(
        { name: sha256, options: { max_chunk_size: this.#chunkBytes } },
        fileChunks(file, this.#chunkBytes),
        // Expect the name's meta as we saw it (0: none): of two controllers storing the same
        // image at once, one wins and the other's chunks are purged, never left orphaned.
        { previousRevision: existing?.revision ?? 0, timeout: this.#timeoutMs },
      );
      // The client hashed what it sent: a staged file changed under us fails here, not at a reader.
      if (stored.digest !== digest || stored.size !== size) {
        await this.#objects.delete(sha256).catch(() => undefined);
        throw new BlobCorruptError(sha256, `the object store received ${stored.size} bytes hashing to ${stored.digest}`, {
          bucket: this.bucket,
        });
      }
    } catch (err) {
      if (err instanceof BmError) throw err;
      const lost = err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;
      const now = lost ? await this.#info(sha256) : null;
      if (isLive(now) && now.digest === digest && now.size === size) return;
      throw new BlobStoreUnavailableError(`cannot store blob ${sha256} in bucket ${this.bucket}`, { bucket: this.bucket, sha256 }, err);
    } finally {
      await file.close();
    }
  }

  async #info(sha256: string): Promise<ObjectInfo | null> {
    checkSha256(sha256);
    try {
      return await this.#objects.info(sha256);
    } catch (err) {
      throw new BlobStoreUnavailableError(`cannot read blob ${sha256} from bucket ${this.bucket}`, { bucket: this.bucket, sha256 }, err);
    }
  }

  async stat(sha256: string): Promise<BlobInfo | undefined> {
    const info = await this.#info(sha256);
    return isLive(info) ? { sha256, size: info.size } : undefined;
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.stat(sha256)) !== undefined;
  }

  async delete(sha256: string): Promise<boolean> {
    const info = await this.#info(sha256);
    await this.cache.evict(sha256);
    if (!isLive(info)) return false;
    try {
      await this.#objects.delete(sha256);
    } catch (err) {
      throw new BlobStoreUnavailableError(`cannot delete blob ${sha256} from bucket ${this.bucket}`, { bucket: this.bucket, sha256 }, err);
    }
    return true;
  }

  /**
   * A verified local copy and its size. NATS decides whether the blob
   * exists (a delete through another controller shows here); while NATS
   * cannot be reached, a copy already verified in this process still serves,
   * so a NATS restart does not fail the deploys reading it.
   */
  async #local(sha256: string): Promise<{ path: string; size: number }> {
    let info: ObjectInfo | null;
    try {
      info = await this.#info(sha256);
    } catch (err) {
      const cached = await this.cache.verifiedCopy(sha256);
      if (cached === undefined) throw err;
      return cached;
    }
    if (!isLive(info)) {
      await this.cache.evict(sha256);
      throw new BlobNotFoundError(sha256);
    }
    const path = await this.cache.ensure(sha256, info.size, (write) =>
      fetchObjectChunks(this.#js, { bucket: this.bucket, sha256, nuid: info.nuid, size: info.size, timeoutMs: this.#timeoutMs }, write),
    );
    return { path, size: info.size };
  }

  /** An open handle on the verified copy. The copy could be evicted or replaced between ensure and open, so the handle is checked against what was verified. */
  async #openVerified(sha256: string): Promise<{ handle: FileHandle; size: number }> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const { path, size } = await this.#local(sha256);
      let handle: FileHandle;
      try {
        handle = await open(path, 'r');
      } catch (err) {
        if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') continue;
        throw err;
      }
      if (await this.cache.isVerified(sha256, handle)) return { handle, size };
      await handle.close();
    }
    throw new BlobCorruptError(sha256, 'the cached copy kept changing while being opened', { bucket: this.bucket });
  }

  async openRead(sha256: string, range?: BlobRange): Promise<Readable> {
    const { handle, size } = await this.#openVerified(sha256);
    let span: { offset: number; length: number };
    try {
      span = resolveRange(sha256, size, range);
    } catch (err) {
      await handle.close();
      throw err;
    }
    if (span.length === 0) {
      await handle.close();
      return Readable.from([]);
    }
    // The stream owns the handle and closes it at its end or on destroy.
    return handle.createReadStream({ start: span.offset, end: span.offset + span.length - 1, highWaterMark: 1024 * 1024 });
  }

  async openRandomAccess(sha256: string): Promise<ClosableRandomAccessReader> {
    const { handle, size } = await this.#openVerified(sha256);
    return new FileHandleReader(handle, size);
  }

  /** Every stored blob's digest (for garbage collection and audits). */
  async *list(): AsyncGenerator<string> {
    const infos = await this.#objects.list();
    for (const name of infos
      .filter((i) => !i.deleted)
      .map((i) => i.name)
      .sort())
      yield name;
  }

  /**
   * Chunk subjects no live object points at: what an upload cut off by a
   * crashed controller leaves (the client purges them itself on any error
   * it sees). An upload in flight also shows here until its meta lands.
   */
  async strayChunks(): Promise<string[]> {
    const status = await this.#objects.status({ subjects_filter: `$O.${this.bucket}.C.>` });
    const live = new Set((await this.#objects.list()).filter((i) => !i.deleted).map((i) => i.nuid));
    return Object.keys(status.streamInfo.state.subjects ?? {})
      .filter((subject) => !live.has(subject.slice(subject.lastIndexOf('.') + 1)))
      .sort();
  }

  /**
   * Purges stray chunks whose newest message is older than `olderThanMs`:
   * an upload cut off by a crashed controller, whose bytes no meta points at
   * and nothing else would ever remove. An upload in flight publishes a
   * chunk at least every request timeout, so it is never that old. Call at
   * start-up; returns how many uploads' chunks went.
   */
  async sweepStrayChunks(olderThanMs = 60 * 60 * 1000, now = Date.now()): Promise<number> {
    const jsm = await this.#js.jetstreamManager();
    let purged = 0;
    for (const subject of await this.strayChunks()) {
      const last = await jsm.streams.getMessage(`OBJ_${this.bucket}`, { last_by_subj: subject });
      if (last === null || now - last.time.getTime() < olderThanMs) continue;
      // Re-checked: a meta that landed since the listing makes these chunks an object's.
      if (!(await this.strayChunks()).includes(subject)) continue;
      await jsm.streams.purge(`OBJ_${this.bucket}`, { filter: subject });
      purged++;
    }
    return purged;
  }

  /** Closes the connection if the store opened it. */
  async close(): Promise<void> {
    await this.#ownConnection?.close();
  }

  /** Removes the bucket and everything in it (tests and benchmarks clean up with this). */
  async destroy(): Promise<void> {
    await this.#objects.destroy();
  }
}
