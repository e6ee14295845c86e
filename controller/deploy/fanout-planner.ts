/**
 * Who feeds whom when several nodes deploy the same image at once: the
 * controller streams it to one node (the root), and every later deploy of
 * that image joins a tree of relays (agent/server/relay-image.ts) rather than
 * opening another stream from the controller. Plans live in this
 * controller's memory: a deploy is driven by its node's owner, and a node
 * taken over by another controller simply starts from the new owner's
 * checkpoint and plan.
 *
 * The shape: at most `fanout` followers per relay (default 2), a joiner
 * taking the free slot nearest the controller (breadth first, then the
 * earliest joined). Why 2 rather than a chain or a wide star:
 * - every hop adds a relay's commit lag (it forwards only what it has
 *   fdatasync'd, one commit interval behind what it receives), so depth
 *   matters: 20 nodes are 4 hops deep at fan-out 2, 19 as a chain;
 * - a relay's outgoing link carries `fanout` copies of what it receives: at
 *   2 a full-duplex NIC that feeds a disk at half its line rate or less
 *   (the usual case: 10-25 GbE against one disk's write speed) still keeps
 *   both followers at the relay's own speed; wider, the followers slow down;
 * - a relay that dies sends at most `fanout` followers back to the
 *   controller (each resumes from its own checkpoint), so the controller's
 *   bytes stay near one image even through a failure.
 * Deploys that start later join the same way, at any point of the image: a
 * relay reads earlier blocks back from its disk. A member that finished
 * (its node reboots soon) or fell out takes no new followers.
 */

export interface RelayEndpoint {
  readonly nodeUuid: string;
  /** host:port of the relay's agent, and its token (the controller's call to it). */
  readonly address: string;
  readonly token: string;
}

export interface FanoutJoin {
  readonly nodeUuid: string;
  /** Deploys with the same key write the same bytes (see fanoutImageKey). */
  readonly imageKey: string;
  readonly agentAddress: string;
  readonly agentToken: string;
}

export interface FanoutPlannerOptions {
  /** Followers per relay (default 2; 1 makes a chain). */
  readonly fanout?: number;
  /** Streams of one image the controller feeds itself before deploys follow relays (default 1). */
  readonly roots?: number;
}

interface Member {
  readonly join: FanoutJoin;
  readonly order: number;
  /** 0: fed by the controller; n: n relays between it and the controller. */
  depth: number;
  upstream: Member | undefined;
  readonly followers: Set<Member>;
  state: 'streaming' | 'left';
  readonly idle: Set<() => void>;
}

/** A deploy's place in the plan, held for as long as it streams. */
export interface FanoutLease {
  /** Where this deploy's stream comes from: a relay, or undefined for the controller. */
  readonly upstream: RelayEndpoint | undefined;
  /** The relay failed this deploy: from now on the controller feeds it (it may still relay to others). */
  fellBack(): void;
  /** This deploy's stream is over (done or failed): no new followers; its followers keep what they have. */
  leave(): void;
  /** How many deploys this one relays to now. */
  followers(): number;
  /** Resolves once no deploy follows this one, or after `timeoutMs` (before its node reboots away from under them). */
  followersDone(timeoutMs: number): Promise<void>;
}

export class FanoutPlanner {
  readonly fanout: number;
  readonly roots: number;
  readonly #members = new Map<string, Member[]>();
  #joined = 0;

  constructor(options: FanoutPlannerOptions = {}) {
    this.fanout = options.fanout ?? 2;
    this.roots = options.roots ?? 1;
    if (!Number.isSafeInteger(this.fanout) || this.fanout < 1)
      throw new RangeError(`fanout must be a positive integer, got ${this.fanout}`);
    if (!Number.isSafeInteger(this.roots) || this.roots < 1) throw new RangeError(`roots must be a positive integer, got ${this.roots}`);
  }

  join(join: FanoutJoin): FanoutLease {
    const members = this.#members.get(join.imageKey) ?? [];
    this.#members.set(join.imageKey, members);
    // A node that joins again (a retried deploy) replaces its earlier place.
    const earlier = members.find((m) => m.join.nodeUuid === join.nodeUuid);
    if (earlier) this.#leave(earlier);
    const streaming = members.filter((m) => m.state === 'streaming');
    const fedByController = streaming.filter((m) => m.upstream === undefined).length;
    let upstream: Member | undefined;
    if (fedByController >= this.roots) {
      for (const m of streaming) {
        if (m.followers.size >= this.fanout) continue;
        if (!upstream || m.depth < upstream.depth || (m.depth === upstream.depth && m.order < upstream.order)) upstream = m;
      }
    }
    const member: Member = {
      join,
      order: this.#joined++,
      depth: upstream ? upstream.depth + 1 : 0,
      upstream,
      followers: new Set(),
      state: 'streaming',
      idle: new Set(),
    };
    upstream?.followers.add(member);
    members.push(member);
    const endpoint: RelayEndpoint | undefined = upstream
      ? { nodeUuid: upstream.join.nodeUuid, address: upstream.join.agentAddress, token: upstream.join.agentToken }
      : undefined;
    return {
      upstream: endpoint,
      fellBack: () => {
        this.#detach(member);
        member.depth = 0;
      },
      leave: () => this.#leave(member),
      followers: () => member.followers.size,
      followersDone: (timeoutMs) => this.#followersDone(member, timeoutMs),
    };
  }

  /** Deploys of `imageKey` in the plan now (streaming), for tests and metrics. */
  streaming(imageKey: string): number {
    return (this.#members.get(imageKey) ?? []).filter((m) => m.state === 'streaming').length;
  }

  #detach(member: Member): void {
    const upstream = member.upstream;
    if (!upstream) return;
    member.upstream = undefined;
    upstream.followers.delete(member);
    if (upstream.followers.size === 0) for (const wake of [...upstream.idle]) wake();
  }

  #leave(member: Member): void {
    if (member.state === 'left') return;
    member.state = 'left';
    this.#detach(member);
    const members = this.#members.get(member.join.imageKey);
    if (!members) return;
    // Forget it once nobody follows it; a member others still follow stays until they leave.
    const prune = (): void => {
      for (let i = members.length - 1; i >= 0; i--) {
        const m = members[i]!;
        if (m.state === 'left' && m.followers.size === 0) members.splice(i, 1);
      }
      if (members.length === 0) this.#members.delete(member.join.imageKey);
    };
    prune();
  }

  #followersDone(member: Member, timeoutMs: number): Promise<void> {
    if (member.followers.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        member.idle.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      member.idle.add(done);
    });
  }
}

/** Deploys write the same bytes when they check the same digest of the same raw content. */
export function fanoutImageKey(expected: { readonly algorithm: string; readonly hex: string }, virtualSize: number): string {
  return `${expected.algorithm}:${expected.hex}:${virtualSize}`;
}
