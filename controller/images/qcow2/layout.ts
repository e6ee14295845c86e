/**
 * Where the active L1 table lives and how much of it the virtual disk uses,
 * checked against the file before anything is read through it. These are the
 * bounds that stop a hostile header from making us allocate or read more than
 * the file itself holds.
 */
import { hex, Qcow2FormatError, UnsupportedImageError } from '../errors.ts';
import type { Qcow2Header } from './header.ts';
import { l2EntriesPerTable } from './l2.ts';

/** QEMU's own limit on the L1 table (32 MiB); images beyond it do not open in QEMU either. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;

export interface Qcow2Layout {
  readonly header: Qcow2Header;
  readonly fileSize: number;
  readonly clusterSize: number;
  /** Guest clusters covering the virtual size (the last may be partial). */
  readonly guestClusters: number;
  readonly l2Entries: number;
  /** L1 entries the virtual size needs; only these are read. */
  readonly l1Entries: number;
}

export function planLayout(header: Qcow2Header, fileSize: number): Qcow2Layout {
  const clusterSize = header.clusterSize;
  const l2Entries = l2EntriesPerTable(header);
  const guestClusters = Math.ceil(header.virtualSize / clusterSize);
  const l1Entries = Math.ceil(guestClusters / l2Entries);

  if (header.l1Size < l1Entries) {
    throw new Qcow2FormatError('l1_size', `${header.l1Size} entries cannot map a ${header.virtualSize}-byte disk (needs ${l1Entries})`, {
      value: header.l1Size,
      needed: l1Entries,
    });
  }
  if (header.l1Size * 8 > MAX_L1_BYTES) {
    throw new UnsupportedImageError('qcow2', 'l1_size', `${header.l1Size} entries exceed the ${MAX_L1_BYTES}-byte L1 table limit`, {
      value: header.l1Size,
    });
  }
  if (header.l1Size > 0) {
    if (header.l1TableOffset < clusterSize) {
      throw new Qcow2FormatError('l1_table_offset', `${hex(header.l1TableOffset)} lies inside the header cluster`, {
        value: hex(header.l1TableOffset),
      });
    }
    if (header.l1TableOffset + header.l1Size * 8 > fileSize) {
      throw new Qcow2FormatError(
        'l1_table_offset',
        `L1 table [${hex(header.l1TableOffset)}, +${header.l1Size * 8}) runs past the end of the ${fileSize}-byte file`,
        {
          value: hex(header.l1TableOffset),
          fileSize,
        },
      );
    }
  }
  if (header.refcountTableClusters > 0) {
    const end = header.refcountTableOffset + header.refcountTableClusters * clusterSize;
    if (header.refcountTableOffset < clusterSize || end > fileSize) {
      throw new Qcow2FormatError(
        'refcount_table_offset',
        `refcount table [${hex(header.refcountTableOffset)}, ${hex(end)}) is outside the file (after the header, before ${fileSize})`,
        {
          value: hex(header.refcountTableOffset),
          fileSize,
        },
      );
    }
  }
  return { header, fileSize, clusterSize, guestClusters, l2Entries, l1Entries };
}
