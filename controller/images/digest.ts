/**
 * The digests of an image's raw content: what `qemu-img convert -O raw`
 * would produce, hashed two ways. `sha256` is the plain one (what an
 * operator can check with sha256sum); `blockSha256` is the 4 MiB block
 * digest (proto/digest/block-sha256.ts) a deploy asks the agent for, since
 * its holes cost nothing to hash. Zero extents never allocate: the hashers
 * take them as lengths.
 */
import { BmError } from '../errors.ts';
import { BlockSha256, PlainSha256 } from '../../proto/digest/index.ts';
import { extentEnd, type ImageSource } from './extents.ts';

export interface RawDigest {
  /** Plain sha256; empty when not asked for (`plain: false`). */
  readonly sha256: string;
  readonly blockSha256: string;
  readonly size: number;
  readonly dataBytes: number;
}

export interface RawDigestOptions {
  /** Also compute the plain sha256 (default true); a raw image already has it from its upload. */
  readonly plain?: boolean;
}

export async function rawContentSha256(source: ImageSource, options: RawDigestOptions = {}): Promise<RawDigest> {
  const plain = options.plain === false ? undefined : new PlainSha256();
  const blocks = new BlockSha256();
  let position = 0;
  let dataBytes = 0;
  for await (const extent of source.extents()) {
    if (extent.offset !== position) {
      throw new BmError('internal', `image source yielded an extent at ${extent.offset}, expected ${position}`, { format: source.format });
    }
    if (extent.kind === 'data') {
      plain?.update(extent.data);
      blocks.update(extent.data);
      dataBytes += extent.data.length;
    } else {
      plain?.zeros(extent.length);
      blocks.zeros(extent.length);
    }
    position = extentEnd(extent);
  }
  if (position !== source.virtualSize) {
    throw new BmError('internal', `image source ended at ${position}, expected ${source.virtualSize}`, { format: source.format });
  }
  return { sha256: plain?.digest() ?? '', blockSha256: blocks.digest(), size: position, dataBytes };
}
