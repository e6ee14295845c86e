/**
 * Builds the map of an image's metadata from the header, the active L1 table
 * and the refcount table (QEMU docs/interop/qcow2.txt, "Host cluster
 * management" and "Cluster mapping"), refusing any table entry that points
 * at metadata. The L2 entries are checked against the sealed map by the
 * reader, which reads every L2 table once at open for that purpose.
 *
 * Snapshot tables and bitmap directories are not mapped: the reader never
 * reads them, and their clusters are shared with the active tables by design.
 */
import { hex, Qcow2FormatError } from '../errors.ts';
import type { RandomAccessReader } from '../random-access.ts';
import { decodeL1Entry } from './l2.ts';
import type { Qcow2Layout } from './layout.ts';
import { MetadataMap, type MetadataRegion } from './metadata-map.ts';

/** QEMU's limit on the refcount table (QCOW_MAX_REFTABLE_SIZE); larger ones do not open in QEMU either. */
export const MAX_REFCOUNT_TABLE_BYTES = 8 * 1024 * 1024;
const TWO_32 = 2 ** 32;

/** Checks an L1 entry's L2 table lies after the header cluster and inside the file. */
export function checkL2TableBounds(layout: Qcow2Layout, l1Index: number, tableOffset: number): void {
  const { clusterSize, fileSize } = layout;
  const context = { index: l1Index, value: hex(tableOffset) };
  if (tableOffset < clusterSize) throw new Qcow2FormatError('l1_entry', `L1 entry ${l1Index} points into the header cluster`, context);
  if (tableOffset + clusterSize > fileSize)
    throw new Qcow2FormatError(
      'l1_entry',
      `L1 entry ${l1Index} points at ${hex(tableOffset)}, past the end of the ${fileSize}-byte file`,
      context,
    );
}

export async function scanMetadata(reader: RandomAccessReader, layout: Qcow2Layout, l1: DataView): Promise<MetadataMap> {
  const { header, clusterSize, fileSize } = layout;
  const map = new MetadataMap();
  const fixed = new MetadataMap();
  const add = (region: MetadataRegion): void => {
    map.add(region);
    fixed.add(region);
  };
  add({ start: 0, end: clusterSize, kind: 'header', index: 0 });
  // The whole clusters the L1 table occupies: QEMU allocates them to it.
  add({
    start: header.l1TableOffset,
    end: Math.ceil((header.l1TableOffset + header.l1Size * 8) / clusterSize) * clusterSize,
    kind: 'l1-table',
    index: 0,
  });
  const refcountTableBytes = header.refcountTableClusters * clusterSize;
  if (refcountTableBytes > MAX_REFCOUNT_TABLE_BYTES) {
    throw new Qcow2FormatError(
      'refcount_table_clusters',
      `${header.refcountTableClusters} clusters exceed the ${MAX_REFCOUNT_TABLE_BYTES}-byte refcount table limit`,
      {
        value: header.refcountTableClusters,
      },
    );
  }
  add({ start: header.refcountTableOffset, end: header.refcountTableOffset + refcountTableBytes, kind: 'refcount-table', index: 0 });
  // The header's own tables must not overlap before any of them is read.
  fixed.seal();

  if (refcountTableBytes > 0) {
    const table = await reader.read(header.refcountTableOffset, refcountTableBytes);
    const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
    for (let index = 0; (index + 1) * 8 <= table.length; index++) {
      // Bits 9-63 are the refcount block's offset; bits 0-8 are reserved.
      const offset = view.getUint32(index * 8) * TWO_32 + ((view.getUint32(index * 8 + 4) & 0xfffffe00) >>> 0);
      if (offset === 0) continue;
      const entry = `refcount table entry ${index}`;
      const context = { index, value: hex(offset) };
      if (offset % clusterSize !== 0)
        throw new Qcow2FormatError(
          'refcount_table_entry',
          `${entry} points at ${hex(offset)}, not aligned to the ${clusterSize}-byte cluster size`,
          context,
        );
      if (offset >= fileSize)
        throw new Qcow2FormatError(
          'refcount_table_entry',
          `${entry} points at ${hex(offset)}, past the end of the ${fileSize}-byte file`,
          context,
        );
      map.add({ start: offset, end: offset + clusterSize, kind: 'refcount-block', index });
    }
  }

  for (let l1Index = 0; l1Index < layout.l1Entries; l1Index++) {
    const tableOffset = decodeL1Entry(l1, l1Index, clusterSize);
    if (tableOffset === 0) continue;
    checkL2TableBounds(layout, l1Index, tableOffset);
    map.add({ start: tableOffset, end: tableOffset + clusterSize, kind: 'l2-table', index: l1Index });
  }
  map.seal();
  return map;
}
