/**
 * Who owns a node now: of the live controllers serving the node's group, the
 * one the hash ring maps the node to. Read from the heartbeat rows on each
 * call (one small query), so a death or a join counts as soon as the
 * database says so; the takeover sweep and the API's forwarding decide from
 * the same rule.
 */
import { HashRing } from './hash-ring.ts';

export interface ClusterMember {
  readonly id: string;
  readonly apiAddress: string;
  readonly groups: readonly string[];
}

/** The heartbeat rows (membership.ts); null before this controller has joined. */
export interface MemberSource {
  members(): Promise<readonly (ClusterMember & { readonly alive: boolean })[]>;
}

export interface OwnedNode {
  readonly uuid: string;
  readonly group: string;
}

/** One reading of the membership: rings per group, built on first use. */
export class OwnerMap {
  readonly #self: ClusterMember;
  readonly #live: readonly ClusterMember[];
  readonly #rings = new Map<string, HashRing>();

  constructor(self: ClusterMember, live: readonly ClusterMember[]) {
    this.#self = self;
    this.#live = live;
  }

  /** The owner, or null when no live controller serves the node's group. */
  ownerOf(node: OwnedNode): ClusterMember | null {
    let ring = this.#rings.get(node.group);
    if (!ring) {
      const ids = this.#live.filter((m) => m.groups.includes(node.group)).map((m) => m.id);
      // This controller counts even before its own row exists (at start) or after it missed a beat: it is running.
      if (this.#self.groups.includes(node.group)) ids.push(this.#self.id);
      ring = new HashRing(ids);
      this.#rings.set(node.group, ring);
    }
    const id = ring.owner(node.uuid);
    if (id === null) return null;
    if (id === this.#self.id) return this.#self;
    return this.#live.find((m) => m.id === id) ?? null;
  }

  /** A live member (or this controller) by id. */
  member(id: string): ClusterMember | null {
    return id === this.#self.id ? this.#self : (this.#live.find((m) => m.id === id) ?? null);
  }

  isSelf(member: ClusterMember | null): boolean {
    return member?.id === this.#self.id;
  }
}

export class Ownership {
  readonly #self: () => ClusterMember;
  readonly #source: () => MemberSource | null;
  readonly #maxAgeMs: number;
  #last: { readonly at: number; readonly map: Promise<OwnerMap> } | null = null;

  /**
   * `self` and `source` are read on each reading: the API address is known once bound, the membership once joined.
   * A reading younger than `maxAgeMs` is reused (a boot storm asks for one per boot; membership moves on the
   * heartbeat interval anyway).
   */
  constructor(self: () => ClusterMember, source: () => MemberSource | null, maxAgeMs = 1000) {
    this.#self = self;
    this.#source = source;
    this.#maxAgeMs = maxAgeMs;
  }

  get selfId(): string {
    return this.#self().id;
  }

  snapshot(): Promise<OwnerMap> {
    const now = Date.now();
    if (this.#last && now - this.#last.at < this.#maxAgeMs) return this.#last.map;
    const map = this.#read();
    this.#last = { at: now, map };
    // A failed reading is not kept: the next caller asks the database again.
    map.catch(() => {
      if (this.#last?.map === map) this.#last = null;
    });
    return map;
  }

  async #read(): Promise<OwnerMap> {
    const source = this.#source();
    const self = this.#self();
    const live = source ? (await source.members()).filter((m) => m.alive && m.id !== self.id) : [];
    return new OwnerMap(self, live);
  }
}
