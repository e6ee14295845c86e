/**
 * Where uploaded image bytes live: content-addressed by sha256, so the same
 * image uploaded twice is stored once, and a blob's name is a promise about
 * its content. The local-disk store is the default; the JetStream object
 * store (jetstream-blob-store.ts) serves every controller of a cluster.
 */
import type { Readable } from 'node:stream';
import { BmError, NotFoundError, ValidationError, type ErrorContext } from '../errors.ts';
import type { ClosableRandomAccessReader } from './random-access.ts';

export interface BlobInfo {
  /** Lowercase hex sha256 of the content. */
  readonly sha256: string;
  readonly size: number;
}

export interface BlobRange {
  readonly offset: number;
  /** Bytes to read; default: to the end of the blob. */
  readonly length?: number;
}

export interface PutOptions {
  /** Refuse (and discard) the upload unless its content hashes to this. */
  readonly expectedSha256?: string;
  /** Refuse (and discard) the upload once it exceeds this many bytes. */
  readonly maxBytes?: number;
  /** Called after each chunk is written, with the running byte count (progress bars). */
  readonly onProgress?: (bytesWritten: number) => void;
}

export interface BlobStore {
  /** Stores a stream, hashing it on the way in; the blob appears whole under its digest or not at all. */
  put(body: AsyncIterable<Uint8Array>, options?: PutOptions): Promise<BlobInfo>;
  /** Streams a blob or a byte range of it. Throws BlobNotFoundError. */
  openRead(sha256: string, range?: BlobRange): Promise<Readable>;
  /** Positioned reads, which the qcow2 reader needs. Throws BlobNotFoundError. */
  openRandomAccess(sha256: string): Promise<ClosableRandomAccessReader>;
  stat(sha256: string): Promise<BlobInfo | undefined>;
  has(sha256: string): Promise<boolean>;
  /** Returns false when there was nothing to delete. */
  delete(sha256: string): Promise<boolean>;
}

export class BlobNotFoundError extends NotFoundError {
  constructor(sha256: string) {
    super('blob', sha256);
  }
}

export class BlobTooLargeError extends BmError {
  constructor(maxBytes: number) {
    super('resource-exhausted', `upload exceeds the ${maxBytes}-byte limit`, { maxBytes });
  }
}

/** Stored bytes that do not hash to their name: a store (or cache) that lost data, never the caller's fault. */
export class BlobCorruptError extends BmError {
  constructor(sha256: string, message: string, context: ErrorContext = {}) {
    super('internal', `blob ${sha256}: ${message}`, { ...context, sha256 });
  }
}

/** The backing service (NATS JetStream) could not be reached or refused the request; the cause is kept for logs. */
export class BlobStoreUnavailableError extends BmError {
  constructor(message: string, context: ErrorContext, cause: unknown) {
    super('unavailable', `${message}: ${cause instanceof Error ? cause.message : String(cause)}`, context, { cause });
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Blob names come only from here: a digest that is exactly 64 lowercase hex digits. */
export function checkSha256(sha256: string): string {
  if (!SHA256_HEX.test(sha256))
    throw new ValidationError('sha256', `${JSON.stringify(sha256.slice(0, 80))} is not 64 lowercase hex digits`);
  return sha256;
}

/** Checks a range against a blob's size; returns the bytes it covers (the whole rest of the blob when no length is given). */
export function resolveRange(sha256: string, size: number, range: BlobRange = { offset: 0 }): { offset: number; length: number } {
  const { offset } = range;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > size) {
    throw new ValidationError('range.offset', `${offset} is outside the ${size}-byte blob`, { sha256 });
  }
  const length = range.length ?? size - offset;
  if (!Number.isSafeInteger(length) || length < 0 || offset + length > size) {
    throw new ValidationError('range.length', `${length} bytes from ${offset} run past the ${size}-byte blob`, { sha256 });
  }
  return { offset, length };
}
