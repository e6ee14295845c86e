/**
 * The seam between the boot protocols and the store. DHCP asks "who is this
 * MAC?" and records leases through it; it never touches the database. The
 * conductor implements it over MySQL; memory-backend.ts is the fake for
 * tests.
 *
 * The contract that keeps two controllers of a group from handing out one
 * address twice: `commitLease` is the only thing that makes a lease, it is
 * atomic (in MySQL: a unique key on the address, INSERT or UPDATE only when
 * the row is ours or expired), it resolves only once the lease is durable,
 * and the DHCP server sends DHCPACK only after it resolved. `allocateLease`
 * merely proposes an address for a DHCPOFFER; an offer promises nothing.
 */

/** What the store knows about a MAC (an enrolled port). */
export interface BootNode {
  readonly mac: string;
  readonly nodeUuid: string;
  /** A fixed address for this port; it need not lie in the dynamic range. */
  readonly fixedAddress: string | null;
}

/** The dynamic range of the segment, as the server was configured. */
export interface AddressPool {
  readonly start: string;
  readonly end: string;
  /** Addresses inside the range never handed out (the server's own, the router). */
  readonly exclude: readonly string[];
}

export interface Lease {
  readonly mac: string;
  readonly ip: string;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
}

export interface AllocateRequest {
  readonly mac: string;
  readonly pool: AddressPool;
  /** Option 50 of a DISCOVER: honoured when free. */
  readonly requestedIp: string | null;
  /** How long the proposal is kept from other MACs (an OFFER's life). */
  readonly holdMs: number;
}

export interface BootBackend {
  /** The enrolled port with this MAC (lower-case, colon-separated), or null. */
  lookup(mac: string): Promise<BootNode | null>;
  /** An address to offer `mac`: its current lease, the requested one if free, or a free one; null when the pool is exhausted. */
  allocateLease(request: AllocateRequest): Promise<string | null>;
  /**
   * Atomically records `mac` → `ip` until `expiresAt`, replacing this MAC's
   * other lease. Throws LeaseConflictError when another MAC holds a live
   * lease on `ip`. Resolves only when durable.
   */
  commitLease(lease: Lease): Promise<Lease>;
  /** DHCPRELEASE: ends the lease if `mac` holds it. */
  releaseLease(mac: string, ip: string): Promise<void>;
  /** DHCPDECLINE: the address is in use by someone else on the wire; keep it out of the pool for a while. */
  declineLease(mac: string, ip: string): Promise<void>;
  /** True when a live, bound lease names `ip` (who may fetch boot kernels and ramdisks); with `mac`, that MAC's lease. */
  holdsLease(ip: string, mac?: string): Promise<boolean>;
}
