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
 */
import { hex, Qcow2FormatError } from '../errors.ts';

/** What a region is, for the message: "the L1 table", "the L2 table of L1 entry 3". */
export interface MetadataRegion {
  readonly start: number;
  readonly end: number;
  readonly what: string;
  /** The error field when this region is the one that was pointed wrongly. */
  readonly field: string;
  /** The entry that pointed here, for the error message and context ("L1 entry 3"). */
  readonly entry: string | undefined;
  readonly context: Readonly<Record<string, string | number>>;
}

export class MetadataMap {
  /** Sorted by start and non-overlapping once sealed. */
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
    // A stable sort keeps insertion order among equal starts, so the region
    // added first is the one "pointed into".
    const order = this.#regions.map((region, rank) => ({ region, rank }));
    order.sort((a, b) => a.region.start - b.region.start || a.rank - b.rank);
    let widest: { region: MetadataRegion; rank: number } | undefined;
    for (const current of order) {
      if (widest !== undefined && current.region.start < widest.region.end) {
        const [owner, pointer] = widest.rank < current.rank ? [widest.region, current.region] : [current.region, widest.region];
        throw overlapError(pointer, owner, pointer.start);
      }
      if (widest === undefined || current.region.end > widest.region.end) widest = current;
    }
    this.#regions = order.map((entry) => entry.region);
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

  /** Refuses a guest data range that overlaps metadata, naming the entry that points there. */
  checkData(start: number, end: number, entry: string, context: Readonly<Record<string, string | number>>): void {
    const owner = this.find(start, end);
    if (owner === undefined) return;
    throw overlapError({ start, end, what: 'guest data', field: 'l2_entry', entry, context }, owner, start);
  }

  get size(): number {
    return this.#regions.length;
  }
}

function overlapError(pointer: MetadataRegion, owner: MetadataRegion, at: number): Qcow2FormatError {
  const who = pointer.entry ?? pointer.what;
  return new Qcow2FormatError(pointer.field, `${who} points at ${hex(at)}, into ${owner.what} [${hex(owner.start)}, ${hex(owner.end)})`, {
    ...pointer.context,
    value: hex(at),
    overlaps: owner.what,
  });
}
