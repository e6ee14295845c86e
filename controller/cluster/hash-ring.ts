/**
 * Which live controller owns a node: a consistent hash ring over the members
 * of the node's group. Each controller stands on the ring at many points
 * (virtual nodes), so load spreads evenly, and adding or removing one moves
 * only about 1/N of the nodes: the ones whose next point clockwise changed.
 */
import { createHash } from 'node:crypto';

const POINTS_PER_MEMBER = 128;

function point(text: string): bigint {
  return createHash('sha256').update(text, 'utf8').digest().readBigUInt64BE(0);
}

export class HashRing {
  readonly #points: readonly { readonly at: bigint; readonly member: string }[];
  readonly members: readonly string[];

  constructor(members: readonly string[]) {
    this.members = [...new Set(members)].sort();
    const points: { at: bigint; member: string }[] = [];
    for (const member of this.members) for (let i = 0; i < POINTS_PER_MEMBER; i++) points.push({ at: point(`${member}#${i}`), member });
    points.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.member < b.member ? -1 : 1));
    this.#points = points;
  }

  /** The member owning `key` (a node uuid), or null on an empty ring. */
  owner(key: string): string | null {
    if (this.#points.length === 0) return null;
    const at = point(key);
    let lo = 0;
    let hi = this.#points.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#points[mid]!.at < at) lo = mid + 1;
      else hi = mid;
    }
    return this.#points[lo % this.#points.length]!.member;
  }
}
