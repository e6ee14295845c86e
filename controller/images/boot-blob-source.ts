/**
 * Kernels and ramdisks for HTTP boot, from the image store: `/images/<id>`
 * where id is an aki/ari image's uuid or name (a tenant's raw or qcow2 image
 * is refused: it travels only over the authenticated block stream). Names that are no image fall
 * through to a directory (the configured deploy kernel/ramdisk files), which
 * stays confined to its root.
 */
import { PassThrough } from 'node:stream';
import { type BlobSource, type ServedBlob, NotBootBlobError } from '../boot/index.ts';
import type { ImageCatalog } from './catalog.ts';

export class CatalogBlobSource implements BlobSource {
  readonly #catalog: ImageCatalog;
  readonly #fallback: BlobSource;

  constructor(catalog: ImageCatalog, fallback: BlobSource) {
    this.#catalog = catalog;
    this.#fallback = fallback;
  }

  async open(name: string): Promise<ServedBlob> {
    const image = name.includes('/') ? null : await this.#catalog.find(name);
    if (!image || image.status !== 'active' || !image.sha256) return this.#fallback.open(name);
    if (image.diskFormat !== 'aki' && image.diskFormat !== 'ari') throw new NotBootBlobError(name, image.diskFormat);
    const blobs = this.#catalog.blobs;
    const sha256 = image.sha256;
    return {
      size: image.size,
      modified: image.createdAt,
      stream: (start, end) => {
        // ServedBlob.stream is synchronous; the store opens asynchronously, so bridge with a PassThrough.
        const out = new PassThrough({ highWaterMark: 256 * 1024 });
        blobs.openRead(sha256, { offset: start, length: end - start + 1 }).then(
          (src) => {
            src.on('error', (err) => out.destroy(err));
            src.pipe(out);
          },
          (err: unknown) => out.destroy(err instanceof Error ? err : new Error(String(err))),
        );
        return out;
      },
    };
  }
}
