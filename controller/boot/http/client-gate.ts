/**
 * Who may fetch kernels and ramdisks from the HTTP boot port. They are the
 * provisioning network's business only (DESIGN.md, "Who may do what"):
 * - DHCP full mode: only an address that holds a lease from us, asked of
 *   the lease store (a PK read, remembered briefly: iPXE fetches a kernel and
 *   a ramdisk, often in ranges, within seconds);
 * - proxy and off, where another server leases addresses: only addresses in
 *   the configured provisioning networks (by default the server address's
 *   own network).
 */
import { ipToInt, isIpv4 } from '../dhcp/index.ts';

export interface BootClientGate {
  /** Whether `address` (IPv4, dotted) may fetch boot blobs. */
  allows(address: string): Promise<boolean>;
  /** Whether `address` may be the machine with `mac` (to get a script carrying its agent token). */
  allowsFor(address: string, mac: string): Promise<boolean>;
  /** For logs and refusals: what this gate requires. */
  readonly rule: string;
}

/** What the lease gate needs of the lease store. */
export interface LeaseHolders {
  /** True when a live, bound lease names `ip` (with `mac`: that MAC's lease). */
  holdsLease(ip: string, mac?: string): Promise<boolean>;
}

const LEASE_ANSWER_TTL_MS = 5000;
const LEASE_ANSWER_MAX = 10_000;

export class LeaseGate implements BootClientGate {
  readonly rule = 'holds a DHCP lease from this controller group';
  readonly #leases: LeaseHolders;
  readonly #now: () => number;
  /** Positive answers only: a refusal is never cached, so a fresh lease works at once. */
  readonly #recent = new Map<string, number>();

  constructor(leases: LeaseHolders, now: () => number = Date.now) {
    this.#leases = leases;
    this.#now = now;
  }

  async allows(address: string): Promise<boolean> {
    const now = this.#now();
    const seen = this.#recent.get(address);
    if (seen !== undefined && now - seen < LEASE_ANSWER_TTL_MS) return true;
    if (!(await this.#leases.holdsLease(address))) return false;
    if (this.#recent.size >= LEASE_ANSWER_MAX) this.#recent.clear();
    this.#recent.set(address, now);
    return true;
  }

  /** Never cached: a token goes only to the address that holds this very MAC's lease now. */
  allowsFor(address: string, mac: string): Promise<boolean> {
    return this.#leases.holdsLease(address, mac);
  }
}

/** An IPv4 network as "a.b.c.d/n". */
export interface Ipv4Network {
  readonly base: number;
  readonly mask: number;
  readonly text: string;
}

export function parseCidr(text: string): Ipv4Network | null {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(text.trim());
  if (!m) return null;
  const bits = Number(m[2]);
  if (bits > 32 || !isIpv4(m[1]!)) return null;
  const base = ipToInt(m[1]!);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { base: (base & mask) >>> 0, mask, text: `${m[1]}/${bits}` };
}

export class NetworkGate implements BootClientGate {
  readonly rule: string;
  readonly #networks: readonly Ipv4Network[];

  constructor(networks: readonly Ipv4Network[]) {
    this.#networks = networks;
    this.rule = `address in ${networks.map((n) => n.text).join(', ') || '(no network)'}`;
  }

  async allows(address: string): Promise<boolean> {
    if (!isIpv4(address)) return false;
    const n = ipToInt(address);
    return this.#networks.some((net) => (n & net.mask) >>> 0 === net.base);
  }

  /** Another server leases here: the provisioning network is all we can check (the token is still delivered once). */
  allowsFor(address: string): Promise<boolean> {
    return this.allows(address);
  }
}

/** The peer address of an HTTP request as dotted IPv4 (IPv4-mapped IPv6 unwrapped), or null. */
export function clientIpv4(remoteAddress: string | undefined): string | null {
  if (!remoteAddress) return null;
  const unwrapped = remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
  return /^\d{1,3}(?:\.\d{1,3}){3}$/.test(unwrapped) ? unwrapped : null;
}
