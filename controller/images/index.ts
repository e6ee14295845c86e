/** The public face of controller/images/: what other folders import (scripts/check-imports.ts). */
export { CatalogBlobSource } from './boot-blob-source.ts';
export { ImageCatalog, type ImageRecord } from './catalog.ts';
export type { ImageFormat, ImageSource } from './extents.ts';
export { LocalBlobStore } from './local-blob-store.ts';
export { openImageSource } from './open.ts';
export { openBlobStore } from './open-blob-store.ts';
