/**
 * Builds the BlobStore `[images] store` names, ready to serve: upload temp
 * files left by a crash are swept first (none can be live before we serve).
 */
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import type { BlobStore } from './blob-store.ts';
import { bucketName, JetStreamBlobStore } from './jetstream-blob-store.ts';
import { LocalBlobStore } from './local-blob-store.ts';

export interface OpenedBlobStore {
  readonly store: BlobStore;
  close(): Promise<void>;
}

export async function openBlobStore(config: Pick<Config, 'images' | 'nats'>, controllerId: string, log: Logger): Promise<OpenedBlobStore> {
  const { images } = config;
  if (images.store === 'local') {
    const store = new LocalBlobStore(images.store_path);
    await store.sweepTemp();
    return { store, close: async () => undefined };
  }
  const bucket = bucketName(config.nats.prefix, images.bucket);
  const store = await JetStreamBlobStore.connect(config.nats.url, {
    bucket,
    replicas: images.replicas,
    cacheDir: images.cache_dir,
    name: `bm-blobs-${controllerId}`,
  });
  try {
    await store.cache.sweepTemp();
    const strays = await store.sweepStrayChunks();
    if (strays > 0) log.warn({ bucket, uploads: strays }, 'purged the chunks of uploads cut off by a crash');
    const replicas = await store.replicas();
    if (replicas !== images.replicas)
      log.warn(
        { bucket, replicas, configured: images.replicas },
        'the image bucket existed with another replica count; it keeps its own (change it with `nats stream edit`)',
      );
    log.info({ bucket, replicas, cacheDir: images.cache_dir }, 'images stored in the JetStream object store');
  } catch (err) {
    await store.close();
    throw err;
  }
  return { store, close: () => store.close() };
}
