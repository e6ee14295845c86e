/**
 * Where uploaded image bytes live: content-addressed by sha256, so the same
 * image uploaded twice is stored once, and a blob's name is a promise about
 * its content. The local-disk store is the default; a replicated store
 * (JetStream object store) comes with the HA work behind the same interface.
 */
import type { Readable } from 'node:stream';
import { NotFoundError, ValidationError } from '../errors.ts';
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

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Blob names come only from here: a digest that is exactly 64 lowercase hex digits. */
export function checkSha256(sha256: string): string {
  if (!SHA256_HEX.test(sha256))
    throw new ValidationError('sha256', `${JSON.stringify(sha256.slice(0, 80))} is not 64 lowercase hex digits`);
  return sha256;
}
