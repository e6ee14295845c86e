/**
 * What the upload path calls before accepting a qcow2 image: it parses the
 * header, refuses what a deploy could not read (backing files, encryption,
 * external data, unknown compression types or features), checks the L1 table's bounds, and
 * walks every L2 table checking each entry's offsets, so a hostile or
 * unsupported image is refused at upload time rather than halfway through a
 * deploy. It reads metadata only (at most the file's size, usually a few
 * hundred KiB), never guest data.
 */
import type { RandomAccessReader } from '../random-access.ts';
import { Qcow2Image } from './reader.ts';

export interface Qcow2Inspection {
  readonly format: 'qcow2';
  readonly version: 2 | 3;
  readonly virtualSize: number;
  readonly clusterSize: number;
  readonly extendedL2: boolean;
  readonly dirty: boolean;
  /** Guest clusters backed by host data (standard or partly allocated). */
  readonly dataClusters: number;
  readonly compressedClusters: number;
  readonly zeroClusters: number;
}

export async function inspectQcow2(reader: RandomAccessReader): Promise<Qcow2Inspection> {
  const image = await Qcow2Image.open(reader);
  let dataClusters = 0;
  let compressedClusters = 0;
  let zeroClusters = 0;
  for await (const visit of image.l2Tables()) {
    if (visit.table === undefined) continue;
    for (let index = 0; index < visit.clusters; index++) {
      const entry = image.entry(visit.table, index, visit.firstCluster + index);
      if (entry.kind === 'data' || entry.kind === 'subclusters') dataClusters++;
      else if (entry.kind === 'compressed') compressedClusters++;
      else if (entry.kind === 'zero') zeroClusters++;
    }
  }
  const { header } = image;
  return {
    format: 'qcow2',
    version: header.version,
    virtualSize: header.virtualSize,
    clusterSize: header.clusterSize,
    extendedL2: header.extendedL2,
    dirty: header.dirty,
    dataClusters,
    compressedClusters,
    zeroClusters,
  };
}
