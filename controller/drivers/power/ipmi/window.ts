/**
 * The session sequence-number sliding window (IPMI v2.0 section 6.12.13):
 * accept a number up to 15 ahead of the highest seen, or up to 16 behind it
 * if it has not been seen yet; reject 0 and everything else. This is what
 * stops a captured packet from being replayed into a live session.
 */
const AHEAD = 15;
const BEHIND = 16;

export class SequenceWindow {
  #highest = -1;
  /** Bit i set: highest - i was seen. */
  #seen = 0;

  /** Records and returns true when `sequence` is acceptable; false for a replay or an out-of-window number. */
  accept(sequence: number): boolean {
    if (sequence === 0) return false;
    if (this.#highest < 0) {
      this.#highest = sequence;
      this.#seen = 1;
      return true;
    }
    const ahead = (sequence - this.#highest) >>> 0;
    if (ahead !== 0 && ahead <= AHEAD) {
      this.#seen = ahead >= 32 ? 1 : ((this.#seen << ahead) | 1) >>> 0;
      this.#highest = sequence;
      return true;
    }
    const behind = (this.#highest - sequence) >>> 0;
    if (behind === 0 || behind > BEHIND) return false;
    const bit = 1 << behind;
    if ((this.#seen & bit) !== 0) return false;
    this.#seen = (this.#seen | bit) >>> 0;
    return true;
  }
}
