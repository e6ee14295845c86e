/**
 * The sha256 of an image's raw content: what `qemu-img convert -O raw` would
 * produce, hashed. A deploy compares it with the digest the agent reports for
 * what it wrote. Zero extents are fed from a shared zero buffer in pieces, so
 * a 10 TiB hole costs time but no memory.
 */
import { createHash } from 'node:crypto';
import { BmError } from '../errors.ts';
import { SHARED_ZEROS, extentEnd, type ImageSource } from './extents.ts';

export interface RawDigest {
  readonly sha256: string;
  readonly size: number;
  readonly dataBytes: number;
}

export async function rawContentSha256(source: ImageSource): Promise<RawDigest> {
  const hash = createHash('sha256');
  let position = 0;
  let dataBytes = 0;
  for await (const extent of source.extents()) {
    if (extent.offset !== position) {
      throw new BmError('internal', `image source yielded an extent at ${extent.offset}, expected ${position}`, { format: source.format });
    }
    if (extent.kind === 'data') {
      hash.update(extent.data);
      dataBytes += extent.data.length;
    } else {
      for (let left = extent.length; left > 0; left -= SHARED_ZEROS.length) {
        hash.update(SHARED_ZEROS.subarray(0, Math.min(left, SHARED_ZEROS.length)));
      }
    }
    position = extentEnd(extent);
  }
  if (position !== source.virtualSize) {
    throw new BmError('internal', `image source ended at ${position}, expected ${source.virtualSize}`, { format: source.format });
  }
  return { sha256: hash.digest('hex'), size: position, dataBytes };
}
