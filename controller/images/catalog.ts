/**
 * The image catalog: image records in MySQL, their bytes in a BlobStore.
 * An upload reserves the name first (so a clash fails before a byte is sent),
 * stores the bytes content-addressed, checks the format (an unsupported or
 * hostile qcow2 is refused here, at upload, not at deploy), computes the raw
 * content digest deploys verify against, and only then becomes active.
 */
import { and, asc, eq, gt, ne, or, sql } from 'drizzle-orm';
import { type Database, images, type ImageRow } from '../../db/index.ts';
import { AlreadyExistsError, BmError, NotFoundError, ValidationError } from '../errors.ts';
import { isUuid, uuidv7, hasControlCharacter } from '../nodes/index.ts';
import type { BlobStore } from './blob-store.ts';
import { rawContentSha256 } from './digest.ts';
import { inspectImage } from './inspect.ts';
import { openImageSource } from './open.ts';

export const DISK_FORMATS = ['raw', 'qcow2', 'aki', 'ari'] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];

export interface ImageRecord {
  readonly uuid: string;
  readonly name: string;
  readonly diskFormat: DiskFormat;
  readonly status: string;
  readonly sha256: string;
  readonly size: number;
  readonly virtualSize: number;
  readonly rawSha256: string;
  /** The raw content's 4 MiB block digest, which deploys check; empty for images stored before it existed. */
  readonly rawBlockSha256: string;
  readonly properties: Readonly<Record<string, string>>;
  readonly createdAt: Date;
}

export interface ImageMetaInput {
  readonly name: string;
  readonly diskFormat: string;
  readonly properties: Readonly<Record<string, string>>;
  readonly expectedSha256: string;
}

/** Properties that name other images, and the format each must have. */
const IMAGE_REFERENCES: Readonly<Record<string, DiskFormat>> = { kernel_id: 'aki', ramdisk_id: 'ari' };

function toRecord(row: ImageRow): ImageRecord {
  return {
    uuid: row.uuid,
    name: row.name,
    diskFormat: row.diskFormat as DiskFormat,
    status: row.status,
    sha256: row.sha256 ?? '',
    size: row.size,
    virtualSize: row.virtualSize,
    rawSha256: row.rawSha256 ?? '',
    rawBlockSha256: row.rawBlockSha256 ?? '',
    properties: row.properties ?? {},
    createdAt: row.createdAt,
  };
}

function isDuplicate(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) if ((e as { code?: string }).code === 'ER_DUP_ENTRY') return true;
  return false;
}

export class ImageCatalog {
  readonly #db: Database;
  readonly #blobs: BlobStore;
  readonly #maxUploadBytes: number;

  constructor(db: Database, blobs: BlobStore, options: { maxUploadBytes: number }) {
    this.#db = db;
    this.#blobs = blobs;
    this.#maxUploadBytes = options.maxUploadBytes;
  }

  get blobs(): BlobStore {
    return this.#blobs;
  }

  async #validate(meta: ImageMetaInput): Promise<DiskFormat> {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(meta.name) || isUuid(meta.name)) {
      throw new ValidationError('name', 'must be 1-255 letters, digits, ".", "_" or "-", not UUID-shaped');
    }
    if (!(DISK_FORMATS as readonly string[]).includes(meta.diskFormat))
      throw new ValidationError('disk_format', `must be one of ${DISK_FORMATS.join(', ')}`);
    if (meta.expectedSha256 !== '' && !/^[0-9a-f]{64}$/.test(meta.expectedSha256))
      throw new ValidationError('expected_sha256', 'must be 64 lowercase hex digits');
    const entries = Object.entries(meta.properties);
    if (entries.length > 64) throw new ValidationError('properties', 'at most 64 properties');
    for (const [key, value] of entries) {
      if (key.length > 64 || value.length > 1024)
        throw new ValidationError('properties', `property ${key.slice(0, 64)}: keys at most 64, values at most 1024 characters`);
      if (hasControlCharacter(key) || hasControlCharacter(value))
        throw new ValidationError('properties', 'keys and values must not contain NUL or other control characters');
      const wanted = IMAGE_REFERENCES[key];
      if (wanted) {
        const ref = await this.find(value);
        if (!ref) throw new ValidationError(`properties.${key}`, `no image ${value}`);
        if (ref.diskFormat !== wanted)
          throw new ValidationError(`properties.${key}`, `image ${value} is ${ref.diskFormat}, expected ${wanted}`);
      }
    }
    return meta.diskFormat as DiskFormat;
  }

  async upload(meta: ImageMetaInput, chunks: AsyncIterable<Uint8Array>, onProgress?: (bytes: number) => void): Promise<ImageRecord> {
    const diskFormat = await this.#validate(meta);
    const uuid = uuidv7();
    try {
      await this.#db.insert(images).values({ uuid, name: meta.name, diskFormat, status: 'saving', properties: { ...meta.properties } });
    } catch (err) {
      if (isDuplicate(err)) throw new AlreadyExistsError(`an image named ${meta.name} already exists`, { name: meta.name });
      throw err;
    }
    let sha256: string | null = null;
    try {
      const info = await this.#blobs.put(chunks, {
        maxBytes: this.#maxUploadBytes,
        ...(meta.expectedSha256 ? { expectedSha256: meta.expectedSha256 } : {}),
        ...(onProgress ? { onProgress } : {}),
      });
      sha256 = info.sha256;
      let virtualSize = info.size;
      let rawSha256 = info.sha256;
      let rawBlockSha256: string | null = null;
      if (diskFormat === 'raw' || diskFormat === 'qcow2') {
        const reader = await this.#blobs.openRandomAccess(info.sha256);
        const inspection = await inspectImage(reader, diskFormat).catch(async (err: unknown) => {
          await reader.close();
          throw err;
        });
        virtualSize = inspection.virtualSize;
        // One more pass over the stored blob: the raw content's digests (a raw image's plain one is the upload's).
        const opened = await openImageSource(reader, diskFormat);
        try {
          const digests = await rawContentSha256(opened.source, { plain: diskFormat === 'qcow2' });
          if (diskFormat === 'qcow2') rawSha256 = digests.sha256;
          rawBlockSha256 = digests.blockSha256;
        } finally {
          await opened.close();
        }
      }
      await this.#db
        .update(images)
        .set({ status: 'active', sha256: info.sha256, size: info.size, virtualSize, rawSha256, rawBlockSha256 })
        .where(eq(images.uuid, uuid));
    } catch (err) {
      await this.#db.delete(images).where(eq(images.uuid, uuid));
      if (sha256) await this.#dropBlobIfUnused(sha256);
      throw err;
    }
    const created = await this.find(uuid);
    if (!created) throw new BmError('internal', `image ${uuid} vanished after upload`);
    return created;
  }

  async #dropBlobIfUnused(sha256: string): Promise<void> {
    const users = await this.#db.select({ n: sql<number>`COUNT(*)` }).from(images).where(eq(images.sha256, sha256));
    if (Number(users[0]?.n ?? 0) === 0) await this.#blobs.delete(sha256);
  }

  async find(id: string): Promise<ImageRecord | null> {
    if (id.length === 0 || id.length > 255) return null;
    const rows = await this.#db
      .select()
      .from(images)
      .where(isUuid(id) ? eq(images.uuid, id) : eq(images.name, id))
      .limit(1);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  async get(id: string): Promise<ImageRecord> {
    if (id.length === 0) throw new ValidationError('id', 'is required');
    if (id.length > 255) throw new ValidationError('id', 'at most 255 characters');
    if (hasControlCharacter(id)) throw new ValidationError('id', 'must not contain NUL or other control characters');
    const image = await this.find(id);
    if (!image) throw new NotFoundError('image', id);
    return image;
  }

  async list(limit: number, marker: string | null): Promise<{ items: ImageRecord[]; nextMarker: string | null }> {
    const rows = await this.#db
      .select()
      .from(images)
      .where(marker ? gt(images.uuid, marker) : undefined)
      .orderBy(asc(images.uuid))
      .limit(limit + 1);
    const page = rows.slice(0, limit);
    return { items: page.map(toRecord), nextMarker: rows.length > limit ? (page[page.length - 1]?.uuid ?? null) : null };
  }

  /** Refused while another image names it as its kernel or ramdisk (flavors and instances join this check when they exist). */
  async delete(id: string): Promise<ImageRecord> {
    const image = await this.get(id);
    const users = await this.#db
      .select({ uuid: images.uuid, name: images.name })
      .from(images)
      .where(
        and(
          ne(images.uuid, image.uuid),
          or(
            sql`JSON_UNQUOTE(JSON_EXTRACT(${images.properties}, '$.kernel_id')) IN (${image.uuid}, ${image.name})`,
            sql`JSON_UNQUOTE(JSON_EXTRACT(${images.properties}, '$.ramdisk_id')) IN (${image.uuid}, ${image.name})`,
          ),
        ),
      )
      .limit(5);
    if (users.length > 0) {
      throw new BmError(
        'failed-precondition',
        `image ${image.name} is used by image(s) ${users.map((u) => u.name).join(', ')}; delete those first`,
        { image: image.uuid },
      );
    }
    await this.#db.delete(images).where(eq(images.uuid, image.uuid));
    if (image.sha256) await this.#dropBlobIfUnused(image.sha256);
    return image;
  }
}
