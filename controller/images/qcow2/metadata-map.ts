/**
 * Where an image keeps its own metadata (header cluster, L1 table, refcount
 * table, refcount blocks, L2 tables), so that no table entry may point into
 * it. An L2 entry aimed at the L1 table would otherwise deploy the table's
 * bytes as guest data, and an L1 entry aimed at the refcount table would be
 * read as an L2 table: a corrupt or hostile image must be refused, with the
 * entry named, before anything is streamed. qemu-img itself converts several
 * such images to zeros.
 *
 * Pure: regions go in as byte ranges, overlaps come out as typed errors.
 * A region is a few numbers and its words are made only for an error: an
 * image with 512-byte clusters has an L2 table per 32 KiB of disk, hundreds
 * of thousands of them.
 */
import { hex, Qcow2FormatError } from '../errors.ts';

export type RegionKind = 'header' | 'l1-table' | 'refcount-table' | 'refcount-block' | 'l2-table';

export interface MetadataRegion {
  readonly start: number;
  readonly end: number;
  readonly kind: RegionKind;
  /** The refcount table entry or L1 entry that points at this region (refcount blocks and L2 tables). */
  readonly index: number;
}

/** The words for a region: what it is, and (for the one that points wrongly) the entry and error field. */
interface RegionWords {
  readonly what: string;
  readonly entry: string;
  readonly field: string;
  readonly context: Readonly<Record<string, string | number>>;
}

function words(region: MetadataRegion): RegionWords {
  switch (region.kind) {
    case 'header':
      return { what: 'the header cluster', entry: 'the header', field: 'header', context: {} };
    case 'l1-table':
      return { what: 'the L1 table', entry: 'the L1 table (l1_table_offset)', field: 'l1_table_offset', context: {} };
    case 'refcount-table':
      return {
        what: 'the refcount table',
        entry: 'the refcount table (refcount_table_offset)',
        field: 'refcount_table_offset',
        context: {},
      };
    case 'refcount-block':
      return {
        what: `the refcount block of refcount table entry ${region.index}`,
        entry: `refcount table entry ${region.index}`,
        field: 'refcount_table_entry',
        context: { index: region.index },
      };
    case 'l2-table':
      return {
        what: `the L2 table of L1 entry ${region.index}`,
        entry: `L1 entry ${region.index}`,
        field: 'l1_entry',
        context: { index: region.index },
      };
  }
}

export class MetadataMap {
  /** In insertion order until sealed, then sorted by start and non-overlapping. */
  #regions: MetadataRegion[] = [];
  #sealed = false;

  /**
   * Adds a region. Regions may be added in any order; overlaps are reported
   * by seal() against the region added first (the header before the L1
   * table, the L1 table before what an entry points at).
   */
  add(region: MetadataRegion): void {
    if (this.#sealed) throw new Error('metadata map is sealed');
    if (region.end > region.start) this.#regions.push(region);
  }

  /** Checks no two regions overlap; afterwards `find` may be used. */
  seal(): void {
    const regions = this.#regions;
    // Ties in start keep insertion order, so the region added first is the one "pointed into".
    const order = Array.from(regions.keys()).sort(
      (a, b) => (regions[a] as MetadataRegion).start - (regions[b] as MetadataRegion).start || a - b,
    );
    let widest: number | undefined;
    for (const current of order) {
      const region = regions[current] as MetadataRegion;
      if (widest !== undefined && region.start < (regions[widest] as MetadataRegion).end) {
        const [owner, pointer] =
          widest < current ? [regions[widest] as MetadataRegion, region] : [region, regions[widest] as MetadataRegion];
        const said = words(pointer);
        throw overlapError(said.entry, said.field, said.context, owner, pointer.start);
      }
      if (widest === undefined || region.end > (regions[widest] as MetadataRegion).end) widest = current;
    }
    this.#regions = order.map((index) => regions[index] as MetadataRegion);
    this.#sealed = true;
  }

  /** The first metadata region that overlaps [start, end), if any. */
  find(start: number, end: number): MetadataRegion | undefined {
    const regions = this.#regions;
    // Regions do not overlap, so their ends are sorted too: the first region
    // ending after `start` is the only one that can be first to overlap.
    let low = 0;
    let high = regions.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((regions[mid] as MetadataRegion).end <= start) low = mid + 1;
      else high = mid;
    }
    const candidate = regions[low];
    return candidate !== undefined && candidate.start < end ? candidate : undefined;
  }

  /**
   * Refuses a guest data range that overlaps metadata; `entry` names the L2
   * entry that points there (called only for the error).
   */
  checkData(start: number, end: number, entry: () => string, context: Readonly<Record<string, string | number>>): void {
    const owner = this.find(start, end);
    if (owner === undefined) return;
    throw overlapError(entry(), 'l2_entry', context, owner, start);
  }

  get size(): number {
    return this.#regions.length;
  }
}

function overlapError(
  who: string,
  field: string,
  context: Readonly<Record<string, string | number>>,
  owner: MetadataRegion,
  at: number,
): Qcow2FormatError {
  const what = words(owner).what;
  return new Qcow2FormatError(field, `${who} points at ${hex(at)}, into ${what} [${hex(owner.start)}, ${hex(owner.end)})`, {
    ...context,
    value: hex(at),
    overlaps: what,
  });
}
