/**
 * An in-memory BootBackend for unit and integration tests and the DHCP
 * benchmark's "store-less" baseline. Same contract as the MySQL one: a map
 * keyed by address stands in for the unique key.
 */
import type { AddressPool, AllocateRequest, BootBackend, BootNode, Lease } from './backend.ts';
import { intToIp, ipToInt } from './dhcp/options.ts';
import { LeaseConflictError } from './errors.ts';

const DECLINE_QUARANTINE_MS = 10 * 60_000;

export class MemoryBootBackend implements BootBackend {
  private readonly nodes = new Map<string, BootNode>();
  private readonly byIp = new Map<string, Lease>();
  private readonly byMac = new Map<string, string>();
  private readonly holds = new Map<string, { mac: string; until: number }>();
  /** The address each MAC was last offered: an index so DISCOVER never scans all holds. */
  private readonly holdOf = new Map<string, string>();
  private readonly declined = new Map<string, number>();
  private readonly cursors = new Map<string, number>();
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  addNode(node: BootNode): void {
    this.nodes.set(node.mac, node);
  }

  removeNode(mac: string): void {
    this.nodes.delete(mac);
  }

  leases(): Lease[] {
    const t = this.now();
    return [...this.byIp.values()].filter((l) => l.expiresAt > t);
  }

  leaseOf(mac: string): Lease | null {
    const ip = this.byMac.get(mac);
    const lease = ip === undefined ? undefined : this.byIp.get(ip);
    return lease && lease.mac === mac && lease.expiresAt > this.now() ? lease : null;
  }

  async lookup(mac: string): Promise<BootNode | null> {
    return this.nodes.get(mac) ?? null;
  }

  private usableBy(ip: string, mac: string, pool: AddressPool | null, t: number): boolean {
    if (pool && pool.exclude.includes(ip)) return false;
    const lease = this.byIp.get(ip);
    if (lease && lease.mac !== mac && lease.expiresAt > t) return false;
    const hold = this.holds.get(ip);
    if (hold && hold.mac !== mac && hold.until > t) return false;
    const declinedUntil = this.declined.get(ip);
    return declinedUntil === undefined || declinedUntil <= t;
  }

  async allocateLease(req: AllocateRequest): Promise<string | null> {
    const t = this.now();
    const start = ipToInt(req.pool.start);
    const end = ipToInt(req.pool.end);
    const inPool = (ip: string): boolean => {
      const n = ipToInt(ip);
      return n >= start && n <= end;
    };
    const hold = (ip: string): string => {
      const previous = this.holdOf.get(req.mac);
      if (previous !== undefined && previous !== ip && this.holds.get(previous)?.mac === req.mac) this.holds.delete(previous);
      this.holds.set(ip, { mac: req.mac, until: t + req.holdMs });
      this.holdOf.set(req.mac, ip);
      return ip;
    };
    const current = this.leaseOf(req.mac);
    if (current && inPool(current.ip)) return hold(current.ip);
    const held = this.holdOf.get(req.mac);
    const heldEntry = held === undefined ? undefined : this.holds.get(held);
    if (
      held !== undefined &&
      heldEntry?.mac === req.mac &&
      heldEntry.until > t &&
      inPool(held) &&
      this.usableBy(held, req.mac, req.pool, t)
    )
      return hold(held);
    if (req.requestedIp && inPool(req.requestedIp) && this.usableBy(req.requestedIp, req.mac, req.pool, t)) return hold(req.requestedIp);
    const key = `${req.pool.start}-${req.pool.end}`;
    const size = end - start + 1;
    let cursor = this.cursors.get(key) ?? 0;
    for (let i = 0; i < size; i++) {
      const ip = intToIp(start + cursor);
      cursor = (cursor + 1) % size;
      if (this.usableBy(ip, req.mac, req.pool, t)) {
        this.cursors.set(key, cursor);
        return hold(ip);
      }
    }
    return null;
  }

  async commitLease(lease: Lease): Promise<Lease> {
    const t = this.now();
    const held = this.byIp.get(lease.ip);
    if (held && held.mac !== lease.mac && held.expiresAt > t) {
      // The NAKed client's next DISCOVER must get another address.
      if (this.holds.get(lease.ip)?.mac === lease.mac) this.holds.delete(lease.ip);
      if (this.holdOf.get(lease.mac) === lease.ip) this.holdOf.delete(lease.mac);
      throw new LeaseConflictError(lease.ip, lease.mac, held.mac);
    }
    const previous = this.byMac.get(lease.mac);
    if (previous !== undefined && previous !== lease.ip) this.byIp.delete(previous);
    this.byIp.set(lease.ip, lease);
    this.byMac.set(lease.mac, lease.ip);
    if (this.holds.get(lease.ip)?.mac === lease.mac) this.holds.delete(lease.ip);
    this.holdOf.delete(lease.mac);
    return lease;
  }

  async releaseLease(mac: string, ip: string): Promise<void> {
    const held = this.byIp.get(ip);
    if (held && held.mac === mac) {
      this.byIp.delete(ip);
      this.byMac.delete(mac);
    }
  }

  async holdsLease(ip: string, mac?: string): Promise<boolean> {
    const lease = this.byIp.get(ip);
    return lease !== undefined && lease.expiresAt > this.now() && (mac === undefined || lease.mac === mac);
  }

  async declineLease(mac: string, ip: string): Promise<void> {
    await this.releaseLease(mac, ip);
    this.declined.set(ip, this.now() + DECLINE_QUARANTINE_MS);
  }
}
