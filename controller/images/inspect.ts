/**
 * Checks an uploaded disk image against the format the user declared, before
 * it is accepted into the store. A qcow2 is fully validated (see
 * qcow2/inspect.ts); a raw image is any bytes, but one that starts with the
 * qcow2 magic is refused: written raw it would put a qcow2 container on the
 * disk, which is never what the user meant.
 */
import { ImageFormatError } from './errors.ts';
import type { ImageFormat } from './extents.ts';
import { QCOW2_MAGIC } from './qcow2/header.ts';
import { inspectQcow2, type Qcow2Inspection } from './qcow2/inspect.ts';
import type { RandomAccessReader } from './random-access.ts';

export interface RawInspection {
  readonly format: 'raw';
  readonly virtualSize: number;
}

export type ImageInspection = RawInspection | Qcow2Inspection;

export async function inspectImage(reader: RandomAccessReader, declared: ImageFormat): Promise<ImageInspection> {
  if (declared === 'qcow2') return inspectQcow2(reader);
  const head = await reader.read(0, 4);
  if (head.length === 4 && new DataView(head.buffer, head.byteOffset, 4).getUint32(0) === QCOW2_MAGIC) {
    throw new ImageFormatError('raw', 'disk_format', 'the file is a qcow2 image; upload it with --disk-format qcow2', {});
  }
  return { format: 'raw', virtualSize: reader.size };
}
