/**
 * The zero runs an image writer skipped, as sorted, merged [start, end)
 * ranges. Frames arrive in order, so a run either extends the last range or
 * starts a new one. The list is capped: an image that alternates data and
 * holes at a fine grain would otherwise grow it without bound, and past the
 * cap the digest simply reads the rest back (`ranges()` stops at the last
 * range recorded, which is still correct: fewer ranges only mean more reads).
 */
export const MAX_SKIPPED_RANGES = 262_144;

export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

export class SkippedRanges {
  readonly #starts: number[] = [];
  readonly #ends: number[] = [];
  #full = false;

  add(start: number, end: number): void {
    if (end <= start || this.#full) return;
    const last = this.#ends.length - 1;
    if (last >= 0 && this.#ends[last] === start) {
      this.#ends[last] = end;
      return;
    }
    if (last >= 0 && start < this.#ends[last]!)
      throw new RangeError(`skipped range [${start}, ${end}) starts before the previous one ends (${this.#ends[last]})`);
    if (this.#starts.length >= MAX_SKIPPED_RANGES) {
      this.#full = true;
      return;
    }
    this.#starts.push(start);
    this.#ends.push(end);
  }

  get size(): number {
    return this.#starts.length;
  }

  /**
   * The recorded ranges clipped to [start, end), as flat [start, end) pairs
   * (what a hashing worker is sent). Ranges are sorted and disjoint, so a
   * binary search finds the first one.
   */
  flatWithin(start: number, end: number): number[] {
    let low = 0;
    let high = this.#ends.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.#ends[mid]! <= start) low = mid + 1;
      else high = mid;
    }
    const flat: number[] = [];
    for (let i = low; i < this.#starts.length && this.#starts[i]! < end; i++)
      flat.push(Math.max(start, this.#starts[i]!), Math.min(end, this.#ends[i]!));
    return flat;
  }

  *ranges(): Generator<ByteRange> {
    for (let i = 0; i < this.#starts.length; i++) yield { start: this.#starts[i]!, end: this.#ends[i]! };
  }
}
