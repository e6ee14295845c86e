/**
 * The DHCP servers' BootBackend over MySQL. The lease table's primary key is
 * the address, and every claim is one INSERT ... ON DUPLICATE KEY UPDATE that
 * only takes a row that is ours or expired, so the database arbitrates
 * between controllers; an ACK goes out only after commitLease resolved.
 * Raw SQL through the mysql2 pool: this is the hot path of a PXE storm.
 */
import type mysql from 'mysql2/promise';
import { type AllocateRequest, type BootBackend, type BootNode, type Lease, intToIp, ipToInt, LeaseConflictError } from '../boot/index.ts';

/** Declined addresses are parked under a MAC no NIC has, so nobody matches them. */
const NOBODY = '00:00:00:00:00:00';
const DECLINE_QUARANTINE_MS = 10 * 60_000;
const SCAN_WINDOW = 256;
/**
 * Free addresses found by one window scan are handed out from memory for this
 * long; another controller may take one meanwhile, and commitLease settles
 * that (the loser NAKs). Saves a range query per DISCOVER in a storm.
 */
const CANDIDATE_TTL_MS = 1000;
/**
 * Port lookups are remembered this long: a DORA asks twice within
 * milliseconds, and a PXE storm asks thousands of times a second. An enrolled
 * or deleted port takes effect on DHCP at most this late.
 */
const LOOKUP_TTL_MS = 2000;
const LOOKUP_CACHE_MAX = 20_000;
/**
 * Bound leases this controller has seen (its own commits, and other MACs'
 * leases met at a conflict or a check) are kept in memory until they expire,
 * so a window scan that raced a commit cannot offer that address again. Past
 * this many entries the map is cleared: it only saves reads, the database
 * stays the arbiter.
 */
const KNOWN_BOUND_MAX = 100_000;
/** How long a conflict's holder is remembered when its row's expiry is unknown. */
const CONFLICT_MEMORY_MS = 60_000;

// A claim on an existing row only succeeds when the row is ours or expired.
// SET runs left to right: state and expiry are decided on the old mac before
// mac is overwritten. A re-DISCOVER by a MAC that holds a bound lease keeps it
// bound and never shortens it.
const TAKE_OVER = `UPDATE dhcp_leases SET
    state = IF(mac = ? AND state = 'bound' AND ? = 'offered', 'bound', ?),
    expires_at = IF(mac = ? AND state = 'bound' AND ? = 'offered', GREATEST(expires_at, ?), ?),
    mac = ?
  WHERE ip = ? AND (mac = ? OR expires_at < ?)`;

export class MysqlBootBackend implements BootBackend {
  readonly #pool: mysql.Pool;
  readonly #now: () => number;
  /** Offers made by this controller and not yet committed: address -> MAC until a deadline. */
  readonly #holds = new Map<number, { mac: string; until: number }>();
  readonly #holdOf = new Map<string, number>();
  #cursor = 0;
  #candidates: number[] = [];
  #nextCandidate = 0;
  #candidatesAt = 0;
  /** MACs whose allocation saw a bound lease on another address: commitLease must delete it. */
  readonly #staleLease = new Set<string>();
  readonly #lookups = new Map<string, { node: BootNode | null; at: number }>();
  /** address -> the MAC it is bound to, until its expiry (see KNOWN_BOUND_MAX). */
  readonly #knownBound = new Map<number, { mac: string; until: number }>();
  /** MAC -> its address in #knownBound: one lease per MAC, so a new binding voids the old one. */
  readonly #knownBoundOf = new Map<string, number>();

  constructor(pool: mysql.Pool, now: () => number = Date.now) {
    this.#pool = pool;
    this.#now = now;
  }

  async lookup(mac: string): Promise<BootNode | null> {
    const now = this.#now();
    const cached = this.#lookups.get(mac);
    if (cached && now - cached.at < LOOKUP_TTL_MS) return cached.node;
    const [rows] = await this.#pool.query<mysql.RowDataPacket[]>('SELECT node_uuid, fixed_ip FROM ports WHERE address = ? LIMIT 1', [mac]);
    const row = rows[0];
    const node = row ? { mac, nodeUuid: row.node_uuid as string, fixedAddress: (row.fixed_ip as string | null) ?? null } : null;
    if (this.#lookups.size >= LOOKUP_CACHE_MAX) this.#lookups.clear();
    this.#lookups.set(mac, { node, at: now });
    return node;
  }

  /** Takes `ip` for `mac` unless another MAC holds it live; true when ours afterwards. */
  async #claim(ip: number, mac: string, state: 'offered' | 'bound', until: number): Promise<boolean> {
    const expires = new Date(until);
    const [inserted] = await this.#pool.query<mysql.ResultSetHeader>(
      'INSERT IGNORE INTO dhcp_leases (ip, mac, state, expires_at) VALUES (?, ?, ?, ?)',
      [ip, mac, state, expires],
    );
    if (inserted.affectedRows === 1) return true;
    const [updated] = await this.#pool.query<mysql.ResultSetHeader>(TAKE_OVER, [
      mac,
      state,
      state,
      mac,
      state,
      expires,
      expires,
      mac,
      ip,
      mac,
      new Date(this.#now()),
    ]);
    if (updated.affectedRows === 1) return true;
    // Nothing changed: the claim lost, or it re-wrote identical values.
    const [rows] = await this.#pool.query<mysql.RowDataPacket[]>('SELECT mac FROM dhcp_leases WHERE ip = ?', [ip]);
    return rows[0]?.mac === mac;
  }

  /**
   * Offers write nothing: like Kea, the store is written on REQUEST only, so a
   * DISCOVER costs reads, not a commit. Proposals are held in this
   * controller's memory for holdMs; two controllers may propose one address,
   * and commitLease settles it (the loser NAKs and the client starts over).
   */
  async allocateLease(req: AllocateRequest): Promise<string | null> {
    const start = ipToInt(req.pool.start);
    const end = ipToInt(req.pool.end);
    const excluded = new Set(req.pool.exclude.map(ipToInt));
    const now = this.#now();
    const usable = (ip: number): boolean =>
      ip >= start &&
      ip <= end &&
      !excluded.has(ip) &&
      this.#heldBy(ip, now) in { none: 1, [req.mac]: 1 } &&
      this.#boundTo(ip, now) in { none: 1, [req.mac]: 1 };
    const hold = (ip: number): string => {
      const previous = this.#holdOf.get(req.mac);
      if (previous !== undefined && previous !== ip) this.#holds.delete(previous);
      this.#holds.set(ip, { mac: req.mac, until: now + req.holdMs });
      this.#holdOf.set(req.mac, ip);
      return intToIp(ip);
    };

    const [mine] = await this.#pool.query<mysql.RowDataPacket[]>(
      "SELECT ip FROM dhcp_leases WHERE mac = ? AND state = 'bound' ORDER BY expires_at DESC LIMIT 1",
      [req.mac],
    );
    const current = mine[0]?.ip as number | undefined;
    if (current !== undefined && usable(current)) return hold(current);
    if (current !== undefined) this.#staleLease.add(req.mac);
    const held = this.#holdOf.get(req.mac);
    if (held !== undefined && usable(held) && this.#holds.get(held)!.until > now) {
      hold(held);
      if (await this.#stillFree(held, req.mac, now)) return intToIp(held);
    }

    if (req.requestedIp !== null) {
      const wanted = ipToInt(req.requestedIp);
      if (usable(wanted)) {
        const [rows] = await this.#pool.query<mysql.RowDataPacket[]>('SELECT mac FROM dhcp_leases WHERE ip = ? AND expires_at > ?', [
          wanted,
          new Date(now),
        ]);
        if (rows.length === 0 || rows[0]?.mac === req.mac) return hold(wanted);
      }
    }

    for (let refills = 0; refills < 2; refills++) {
      if (now - this.#candidatesAt > CANDIDATE_TTL_MS) this.#candidates = [];
      while (this.#nextCandidate < this.#candidates.length) {
        const ip = this.#candidates[this.#nextCandidate++]!;
        if (!usable(ip)) continue;
        // The hold is taken before the check, so no concurrent DISCOVER picks it meanwhile.
        hold(ip);
        if (await this.#stillFree(ip, req.mac, now)) return intToIp(ip);
      }
      if (!(await this.#refill(start, end, usable, now))) return null;
    }
    return null;
  }

  /**
   * Scans windows of the pool, from where the last scan stopped and wrapping
   * once, until one holds addresses no live lease and no hold has; keeps
   * those as the next candidates. False when the whole pool is taken.
   */
  async #refill(start: number, end: number, usable: (ip: number) => boolean, now: number): Promise<boolean> {
    const size = end - start + 1;
    let cursor = this.#cursor >= start && this.#cursor <= end ? this.#cursor : start;
    for (let scanned = 0; scanned < size; ) {
      const windowEnd = Math.min(end, cursor + SCAN_WINDOW - 1);
      const [rows] = await this.#pool.query<mysql.RowDataPacket[]>(
        'SELECT ip FROM dhcp_leases WHERE ip BETWEEN ? AND ? AND expires_at > ?',
        [cursor, windowEnd, new Date(now)],
      );
      const taken = new Set(rows.map((r) => r.ip as number));
      const free: number[] = [];
      for (let ip = cursor; ip <= windowEnd; ip++) if (!taken.has(ip) && usable(ip)) free.push(ip);
      scanned += windowEnd - cursor + 1;
      cursor = windowEnd >= end ? start : windowEnd + 1;
      if (free.length > 0) {
        this.#cursor = cursor;
        this.#candidates = free;
        this.#nextCandidate = 0;
        this.#candidatesAt = now;
        return true;
      }
    }
    return false;
  }

  /**
   * The check that keeps an offer from naming an address bound to another
   * MAC: the scan that found it may be up to CANDIDATE_TTL_MS old, and another
   * controller may have committed it since. One primary-key read. When it is
   * taken, our hold goes and the holder is remembered.
   */
  async #stillFree(ip: number, mac: string, now: number): Promise<boolean> {
    const [rows] = await this.#pool.query<mysql.RowDataPacket[]>(
      'SELECT mac, expires_at FROM dhcp_leases WHERE ip = ? AND expires_at > ?',
      [ip, new Date(now)],
    );
    const row = rows[0];
    if (row === undefined || row.mac === mac) return true;
    this.#rememberBound(ip, row.mac as string, (row.expires_at as Date).getTime());
    this.#dropHold(ip, mac);
    return false;
  }

  #rememberBound(ip: number, mac: string, until: number): void {
    if (this.#knownBound.size >= KNOWN_BOUND_MAX) {
      this.#knownBound.clear();
      this.#knownBoundOf.clear();
    }
    // Declined addresses are all parked under NOBODY: not one lease per MAC.
    if (mac !== NOBODY) {
      const previous = this.#knownBoundOf.get(mac);
      if (previous !== undefined && previous !== ip && this.#knownBound.get(previous)?.mac === mac) this.#knownBound.delete(previous);
      this.#knownBoundOf.set(mac, ip);
    }
    this.#knownBound.set(ip, { mac, until });
  }

  #boundTo(ip: number, now: number): string {
    const b = this.#knownBound.get(ip);
    if (!b) return 'none';
    if (b.until <= now) {
      this.#knownBound.delete(ip);
      return 'none';
    }
    return b.mac;
  }

  #dropHold(ip: number, mac: string): void {
    if (this.#holds.get(ip)?.mac === mac) this.#holds.delete(ip);
    if (this.#holdOf.get(mac) === ip) this.#holdOf.delete(mac);
  }

  #heldBy(ip: number, now: number): string {
    const h = this.#holds.get(ip);
    if (!h) return 'none';
    if (h.until <= now) {
      this.#holds.delete(ip);
      if (this.#holdOf.get(h.mac) === ip) this.#holdOf.delete(h.mac);
      return 'none';
    }
    return h.mac;
  }

  async commitLease(lease: Lease): Promise<Lease> {
    const ip = ipToInt(lease.ip);
    if (!(await this.#claim(ip, lease.mac, 'bound', lease.expiresAt))) {
      const [rows] = await this.#pool.query<mysql.RowDataPacket[]>('SELECT mac, expires_at FROM dhcp_leases WHERE ip = ?', [ip]);
      const holder = (rows[0]?.mac as string | undefined) ?? 'another client';
      // The NAKed client's next DISCOVER must get another address, not this one again.
      const until = (rows[0]?.expires_at as Date | undefined)?.getTime() ?? this.#now() + CONFLICT_MEMORY_MS;
      this.#rememberBound(ip, holder, until);
      this.#dropHold(ip, lease.mac);
      throw new LeaseConflictError(lease.ip, lease.mac, holder);
    }
    // Known before the hold goes: a scan that raced this commit must not find the address free.
    this.#rememberBound(ip, lease.mac, lease.expiresAt);
    // One lease per MAC: its other rows (an earlier address) go. Skipped, to
    // save a second durable write, when this commits our own offer and the
    // offer found no other lease of this MAC.
    const fromOurOffer = this.#holdOf.get(lease.mac) === ip;
    if (!fromOurOffer || this.#staleLease.has(lease.mac)) {
      await this.#pool.query('DELETE FROM dhcp_leases WHERE mac = ? AND ip <> ?', [lease.mac, ip]);
      this.#staleLease.delete(lease.mac);
    }
    if (this.#holdOf.get(lease.mac) === ip) {
      this.#holds.delete(ip);
      this.#holdOf.delete(lease.mac);
    }
    return lease;
  }

  async releaseLease(mac: string, ip: string): Promise<void> {
    await this.#pool.query('UPDATE dhcp_leases SET expires_at = ? WHERE ip = ? AND mac = ?', [new Date(this.#now() - 1), ipToInt(ip), mac]);
    if (this.#knownBound.get(ipToInt(ip))?.mac === mac) this.#knownBound.delete(ipToInt(ip));
  }

  async declineLease(mac: string, ip: string): Promise<void> {
    const until = new Date(this.#now() + DECLINE_QUARANTINE_MS);
    await this.#pool.query("UPDATE dhcp_leases SET mac = ?, state = 'declined', expires_at = ? WHERE ip = ? AND mac = ?", [
      NOBODY,
      until,
      ipToInt(ip),
      mac,
    ]);
    if (this.#knownBound.get(ipToInt(ip))?.mac === mac) this.#rememberBound(ipToInt(ip), NOBODY, until.getTime());
  }

  async holdsLease(ip: string, mac?: string): Promise<boolean> {
    const [rows] = await this.#pool.query<mysql.RowDataPacket[]>(
      `SELECT 1 FROM dhcp_leases WHERE ip = ? AND state = 'bound' AND expires_at > ?${mac === undefined ? '' : ' AND mac = ?'}`,
      [ipToInt(ip), new Date(this.#now()), ...(mac === undefined ? [] : [mac])],
    );
    return rows.length > 0;
  }

  /** The addresses bound to any of these MACs now (an agent may only advertise one of them, or its source address). */
  async leasedAddresses(macs: readonly string[]): Promise<string[]> {
    if (macs.length === 0) return [];
    const [rows] = await this.#pool.query<mysql.RowDataPacket[]>(
      "SELECT ip FROM dhcp_leases WHERE mac IN (?) AND state = 'bound' AND expires_at > ?",
      [[...macs], new Date(this.#now())],
    );
    return rows.map((r) => intToIp(r.ip as number));
  }

  /** Live leases (for `bmctl`, tests and the benchmark's "every ACK is in MySQL" check). */
  async leases(): Promise<Lease[]> {
    const [rows] = await this.#pool.query<mysql.RowDataPacket[]>(
      "SELECT ip, mac, expires_at FROM dhcp_leases WHERE state = 'bound' AND expires_at > ?",
      [new Date(this.#now())],
    );
    return rows.map((r) => ({ ip: intToIp(r.ip as number), mac: r.mac as string, expiresAt: (r.expires_at as Date).getTime() }));
  }
}
