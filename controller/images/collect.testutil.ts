/** Test helpers: materialise an ImageSource in memory and check the extent invariants on the way. */
import { extentEnd, type Extent, type ImageSource } from './extents.ts';

export interface Collected {
  readonly bytes: Uint8Array;
  readonly extents: readonly Extent[];
}

/** Reads every extent from `fromOffset`, asserting they are ordered, contiguous, non-empty and cover the rest of the image. */
export async function collect(source: ImageSource, fromOffset = 0, maxDataExtent = Infinity): Promise<Collected> {
  const bytes = new Uint8Array(source.virtualSize - fromOffset);
  const extents: Extent[] = [];
  let position = fromOffset;
  let previous: Extent | undefined;
  for await (const extent of source.extents(fromOffset)) {
    if (extent.offset !== position) throw new Error(`extent at ${extent.offset}, expected ${position}`);
    if (extentEnd(extent) <= extent.offset) throw new Error(`empty extent at ${extent.offset}`);
    if (extent.kind === 'zero' && previous?.kind === 'zero') throw new Error(`unmerged zero extents at ${extent.offset}`);
    if (extent.kind === 'data') {
      if (extent.data.length > maxDataExtent) throw new Error(`data extent of ${extent.data.length} bytes exceeds ${maxDataExtent}`);
      bytes.set(extent.data, extent.offset - fromOffset);
    }
    extents.push(extent);
    previous = extent;
    position = extentEnd(extent);
  }
  if (position !== source.virtualSize) throw new Error(`extents end at ${position}, image is ${source.virtualSize}`);
  return { bytes, extents };
}
