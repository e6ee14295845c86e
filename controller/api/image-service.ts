/** ImageService: uploads as a client stream (meta first, then chunks), and the catalog's reads. */
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceHandlers } from '../../proto/rpc/index.ts';
import { ImageSchema, ImageService, type CreateImageRequest, type Image } from '../../proto/gen/bm/v1/image_pb.js';
import { ValidationError } from '../errors.ts';
import type { ImageCatalog, ImageRecord } from '../images/index.ts';
import { pageLimit, pageMarker } from './paging.ts';

export function imageMessage(i: ImageRecord): Image {
  return create(ImageSchema, {
    uuid: i.uuid,
    name: i.name,
    diskFormat: i.diskFormat,
    status: i.status,
    sha256: i.sha256,
    size: BigInt(i.size),
    virtualSize: BigInt(i.virtualSize),
    rawSha256: i.rawSha256,
    rawBlockSha256: i.rawBlockSha256,
    properties: { ...i.properties },
    createdAt: timestampFromDate(i.createdAt),
  });
}

async function* chunksAfterMeta(requests: AsyncIterator<CreateImageRequest>): AsyncIterable<Uint8Array> {
  for (let r = await requests.next(); !r.done; r = await requests.next()) {
    if (r.value.part.case !== 'chunk')
      throw new ValidationError('part', 'only the first message of an upload carries meta; the rest carry chunks');
    yield r.value.part.value;
  }
}

export function imageHandlers(catalog: ImageCatalog): ServiceHandlers<typeof ImageService> {
  return {
    async createImage(requests) {
      const it = requests[Symbol.asyncIterator]();
      const first = await it.next();
      if (first.done || first.value.part.case !== 'meta')
        throw new ValidationError('meta', 'the first message of an upload must carry the image meta');
      const meta = first.value.part.value;
      return imageMessage(
        await catalog.upload(
          { name: meta.name, diskFormat: meta.diskFormat, properties: meta.properties, expectedSha256: meta.expectedSha256 },
          chunksAfterMeta(it),
        ),
      );
    },
    async getImage(req) {
      return imageMessage(await catalog.get(req.id));
    },
    async listImages(req) {
      const page = await catalog.list(pageLimit(req.limit), pageMarker(req.marker));
      return { images: page.items.map(imageMessage), nextMarker: page.nextMarker ?? '' };
    },
    async deleteImage(req) {
      await catalog.delete(req.id);
      return {};
    },
  };
}
