/**
 * Sessions kept open per BMC and handed to one caller at a time. BMCs have
 * few session slots (often 4, shared with every other tool), so at most
 * `maxSessionsPerBmc` (default 1) are opened to one BMC; `maxConcurrent`
 * bounds the BMC conversations of the whole process. A reused session that
 * stops answering is assumed expired on the BMC side and re-opened once.
 */
import { createHash } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIPv4 } from 'node:net';
import { BmcCommandError, BmcTimeoutError, type BmcContext } from '../errors.ts';
import type { CipherSuite } from './crypto.ts';
import { IpmiSession, type Credentials, type SessionOptions } from './session.ts';
import { UdpTransport } from './transport.ts';

export interface SessionPoolOptions {
  readonly maxSessionsPerBmc?: number;
  readonly maxConcurrent?: number;
  /** Idle sessions are closed after this long; keep it under the BMC's session timeout (usually 60 s). */
  readonly idleMs?: number;
  readonly attemptTimeoutMs?: number;
  readonly retries?: number;
  readonly suites?: readonly number[];
  readonly transport?: UdpTransport;
}

export interface PoolTarget extends Credentials {
  readonly address: string;
  readonly port: number;
  readonly privilege: number;
  readonly context: BmcContext;
}

interface BmcEntry {
  readonly idle: IpmiSession[];
  total: number;
  readonly waiters: (() => void)[];
  suite: CipherSuite | null;
}

export interface PoolStats {
  readonly bmcs: number;
  readonly openSessions: number;
  readonly sessionsOpened: number;
  readonly reopened: number;
  readonly droppedDatagrams: number;
  readonly unclaimedDatagrams: number;
}

export class SessionPool {
  readonly #transport: UdpTransport;
  readonly #ownsTransport: boolean;
  readonly #maxPerBmc: number;
  readonly #maxConcurrent: number;
  readonly #idleMs: number;
  readonly #sessionOptions: Omit<SessionOptions, 'privilege'>;
  readonly #entries = new Map<string, BmcEntry>();
  readonly #slotWaiters: (() => void)[] = [];
  readonly #reaper: NodeJS.Timeout;
  #active = 0;
  #opened = 0;
  #reopened = 0;
  #dropped = 0;
  #closed = false;

  constructor(options: SessionPoolOptions = {}) {
    this.#transport = options.transport ?? new UdpTransport();
    this.#ownsTransport = options.transport === undefined;
    this.#maxPerBmc = options.maxSessionsPerBmc ?? 1;
    this.#maxConcurrent = options.maxConcurrent ?? 256;
    this.#idleMs = options.idleMs ?? 30_000;
    this.#sessionOptions = {
      attemptTimeoutMs: options.attemptTimeoutMs ?? 1000,
      retries: options.retries ?? 2,
      suites: options.suites ?? [17, 3],
    };
    this.#reaper = setInterval(() => void this.#reap(), Math.max(1000, this.#idleMs / 2));
    this.#reaper.unref();
  }

  stats(): PoolStats {
    let open = 0;
    for (const e of this.#entries.values()) open += e.total;
    return {
      bmcs: this.#entries.size,
      openSessions: open,
      sessionsOpened: this.#opened,
      reopened: this.#reopened,
      droppedDatagrams: this.#dropped,
      unclaimedDatagrams: this.#transport.unclaimed,
    };
  }

  #key(t: PoolTarget): string {
    // The password is part of the identity (a changed password needs a new session) but only as a digest.
    const digest = createHash('sha256').update(t.password).digest('base64');
    return `${t.address}:${t.port}|${t.username}|${t.privilege}|${digest}`;
  }

  /**
   * Waits until `take` succeeds. `take` checks and claims in one synchronous
   * step: checking first and claiming after an await would let every caller
   * that checked in the same tick claim the same free slot.
   */
  async #acquire(queue: (() => void)[], take: () => boolean, deadline: number, context: BmcContext, what: string): Promise<void> {
    while (!take()) {
      const left = deadline - performance.now();
      if (left <= 0) throw new BmcTimeoutError(context, `waited too long for ${what}`);
      let wake: (() => void) | undefined;
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
        queue.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      const at = queue.indexOf(wake!);
      if (at >= 0) queue.splice(at, 1);
    }
  }

  /** Runs `work` with an open session to the target, then returns the session to the pool. */
  async use<T>(named: PoolTarget, work: (session: IpmiSession) => Promise<T>, deadline: number): Promise<T> {
    if (this.#closed) throw new BmcTimeoutError(named.context, 'the IPMI session pool is closed');
    // Answers are matched by the address they come from, which is an IP: resolve a BMC host name first.
    const target = isIPv4(named.address) ? named : { ...named, address: await this.#resolve(named) };
    await this.#acquire(
      this.#slotWaiters,
      () => {
        if (this.#active >= this.#maxConcurrent) return false;
        this.#active++;
        return true;
      },
      deadline,
      target.context,
      'a free BMC conversation slot',
    );
    const key = this.#key(target);
    let entry = this.#entries.get(key);
    if (!entry) this.#entries.set(key, (entry = { idle: [], total: 0, waiters: [], suite: null }));
    const bmc = entry;
    try {
      let taken: IpmiSession | undefined;
      await this.#acquire(
        bmc.waiters,
        () => {
          taken = bmc.idle.pop();
          if (taken) return true;
          if (bmc.total >= this.#maxPerBmc) return false;
          bmc.total++;
          taken = new IpmiSession(
            this.#transport,
            target.address,
            target.port,
            target,
            { ...this.#sessionOptions, privilege: target.privilege },
            target.context,
          );
          return true;
        },
        deadline,
        target.context,
        `a session to ${target.context.bmc}`,
      );
      const session = taken!;
      try {
        return await this.#run(bmc, session, work, deadline);
      } finally {
        this.#dropped += session.dropped;
        session.dropped = 0;
        if (session.isOpen && !this.#closed) bmc.idle.push(session);
        else bmc.total--;
        bmc.waiters.shift()?.();
      }
    } finally {
      this.#active--;
      this.#slotWaiters.shift()?.();
      if (bmc.total === 0 && bmc.waiters.length === 0 && bmc.suite === null) this.#entries.delete(key);
    }
  }

  async #resolve(target: PoolTarget): Promise<string> {
    try {
      return (await lookup(target.address, { family: 4 })).address;
    } catch (err) {
      throw new BmcCommandError(
        target.context,
        `cannot resolve ${target.address} to an IPv4 address (${err instanceof Error ? err.message : String(err)})`,
      );
    }
  }

  async #run<T>(bmc: BmcEntry, session: IpmiSession, work: (session: IpmiSession) => Promise<T>, deadline: number): Promise<T> {
    // The reaper closes sessions idle for idleMs, checking every idleMs/2, so an open one here is at most
    // 1.5 x idleMs old: under the BMC's timeout with the defaults. If the BMC forgot it anyway, the retry below re-opens.
    const reused = session.isOpen;
    if (!reused) await this.#open(bmc, session, deadline);
    try {
      return await work(session);
    } catch (err) {
      // A completion code or an unusable answer leaves the session as good as it was; silence does not.
      if (!(err instanceof BmcTimeoutError)) throw err;
      session.abandon();
      if (!reused || deadline - performance.now() <= 0) throw err;
      // The BMC may have expired the session (they drop packets for unknown sessions silently).
      this.#reopened++;
      await this.#open(bmc, session, deadline);
      return await work(session);
    }
  }

  async #open(bmc: BmcEntry, session: IpmiSession, deadline: number): Promise<void> {
    try {
      await session.open(deadline, bmc.suite);
    } catch (err) {
      if (bmc.suite === null || !(err instanceof BmcTimeoutError)) throw err;
      // The remembered suite may no longer be offered (BMC reconfigured): discover again.
      bmc.suite = null;
      await session.open(deadline, null);
    }
    this.#opened++;
    bmc.suite = session.suite;
  }

  async #reap(): Promise<void> {
    const now = performance.now();
    const closing: Promise<void>[] = [];
    for (const bmc of this.#entries.values()) {
      for (let i = bmc.idle.length - 1; i >= 0; i--) {
        const session = bmc.idle[i]!;
        if (now - session.lastUsed < this.#idleMs) continue;
        bmc.idle.splice(i, 1);
        bmc.total--;
        closing.push(session.close(performance.now() + 2000).catch(() => undefined));
      }
    }
    await Promise.all(closing);
  }

  /** Closes every idle session (Close Session to each BMC) and, when the pool made it, the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#reaper);
    const closing: Promise<void>[] = [];
    for (const bmc of this.#entries.values()) {
      for (const session of bmc.idle.splice(0)) closing.push(session.close(performance.now() + 1000).catch(() => undefined));
      bmc.total = 0;
    }
    await Promise.all(closing);
    this.#entries.clear();
    if (this.#ownsTransport) await this.#transport.close();
  }
}
