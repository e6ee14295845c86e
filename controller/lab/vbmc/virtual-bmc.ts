/**
 * A virtual BMC: the BMC side of IPMI v2.0 over LAN (RMCP+ sessions with
 * cipher suites 3 and 17, real crypto) for the commands the power drivers use,
 * with per-BMC power and boot state and a hook on power changes. No sockets
 * here: `handle` takes a datagram and returns the answer (or null), so the
 * fuzz tests can drive it directly and server.ts puts it on UDP. It reuses the
 * driver's codecs and crypto: what is tested against ipmitool is the same code.
 */
import { randomBytes, randomInt } from 'node:crypto';
import {
  CC_INSUFFICIENT_PRIVILEGE,
  CC_INVALID_COMMAND,
  CC_OK,
  CC_REQUEST_LENGTH,
  CHASSIS_CONTROL,
  CLOSE_SESSION,
  GET_BOOT_OPTIONS,
  GET_CHANNEL_AUTH_CAPABILITIES,
  GET_CHANNEL_CIPHER_SUITES,
  GET_CHASSIS_STATUS,
  GET_DEVICE_ID,
  PRIVILEGE_OPERATOR,
  PRIVILEGE_USER,
  SET_BOOT_OPTIONS,
  SET_SESSION_PRIVILEGE,
  type BootFlags,
  type CommandId,
  deriveKeys,
  rakp2Code,
  rakp3Code,
  rakp4Icv,
  sameBytes,
  sessionIntegrityKey,
  suiteById,
  userKey,
  type CipherSuite,
  type RakpExchange,
  type SessionKeys,
  IpmiDecodeError,
  decodeRequest,
  encodeResponse,
  type IpmiRequest,
  PAYLOAD_IPMI,
  PAYLOAD_OPEN_SESSION_REQUEST,
  PAYLOAD_OPEN_SESSION_RESPONSE,
  PAYLOAD_RAKP1,
  PAYLOAD_RAKP2,
  PAYLOAD_RAKP3,
  PAYLOAD_RAKP4,
  decodeEnvelope,
  encodeV15,
  encodeV20,
  openPayload,
  type V20Envelope,
  RAKP_INVALID_AUTH_ALG,
  RAKP_INVALID_INTEGRITY,
  RAKP_INVALID_ROLE,
  RAKP_NO_CIPHER_SUITE,
  RAKP_NO_RESOURCES,
  RAKP_OK,
  RAKP_UNAUTHORIZED_NAME,
  RAKP_UNAUTHORIZED_ROLE,
  decodeOpenSessionRequest,
  decodeRakp1,
  decodeRakp3,
  encodeOpenSessionResponse,
  encodeRakp2,
  encodeRakp4,
  SequenceWindow,
} from '../../drivers/power/ipmi/index.ts';
import { Chassis, is, type PowerChange, type Reply } from './chassis.ts';

export type { PowerCause, PowerChange } from './chassis.ts';

export interface VirtualBmcUser {
  readonly name: string;
  readonly password: string;
  /** 2 USER, 3 OPERATOR, 4 ADMINISTRATOR. */
  readonly privilege: number;
}

export interface VirtualBmcOptions {
  readonly name?: string;
  readonly users?: readonly VirtualBmcUser[];
  readonly power?: 'on' | 'off';
  readonly suites?: readonly number[];
  readonly maxSessions?: number;
  readonly sessionTimeoutMs?: number;
  readonly guid?: Uint8Array;
  readonly onPowerChange?: (change: PowerChange) => void;
}

interface Session {
  readonly bmcSessionId: number;
  readonly consoleSessionId: number;
  readonly suite: CipherSuite;
  readonly maxPrivilege: number;
  state: 'opened' | 'rakp2' | 'active';
  user: VirtualBmcUser | null;
  rakp: RakpExchange | null;
  /** The last RAKP answer, sent again when its request is retransmitted (the answer was lost). */
  rakpAnswer: Uint8Array | null;
  keys: SessionKeys | null;
  privilege: number;
  outbound: number;
  window: SequenceWindow;
  lastActivity: number;
}

export interface VirtualBmcStats {
  received: number;
  answered: number;
  sessionsOpened: number;
  authFailures: number;
  /** Sessions opened, by cipher suite ID. */
  suites: Record<number, number>;
  dropped: Record<string, number>;
}

/** Which commands need which session privilege (IPMI v2.0 Appendix G). */
const REQUIRED_PRIVILEGE: readonly (readonly [CommandId, number])[] = [
  [GET_DEVICE_ID, PRIVILEGE_USER],
  [GET_CHASSIS_STATUS, PRIVILEGE_USER],
  [GET_BOOT_OPTIONS, PRIVILEGE_OPERATOR],
  [CHASSIS_CONTROL, PRIVILEGE_OPERATOR],
  [SET_BOOT_OPTIONS, PRIVILEGE_OPERATOR],
  [SET_SESSION_PRIVILEGE, PRIVILEGE_USER],
  [CLOSE_SESSION, PRIVILEGE_USER],
];

export class VirtualBmc {
  readonly name: string;
  readonly #users: readonly VirtualBmcUser[];
  readonly #suites: readonly CipherSuite[];
  readonly #maxSessions: number;
  readonly #sessionTimeoutMs: number;
  readonly #guid: Uint8Array;
  readonly #sessions = new Map<number, Session>();
  readonly #chassis: Chassis;
  /** When set, every datagram is dropped unanswered: a BMC that went away. */
  silent = false;
  readonly stats: VirtualBmcStats = { received: 0, answered: 0, sessionsOpened: 0, authFailures: 0, suites: {}, dropped: {} };

  constructor(options: VirtualBmcOptions = {}) {
    this.name = options.name ?? 'vbmc';
    this.#users = options.users ?? [{ name: 'admin', password: 'password', privilege: 4 }];
    this.#suites = (options.suites ?? [3, 17]).map((id) => {
      const s = suiteById(id);
      if (!s) throw new RangeError(`unknown cipher suite ${id}: this virtual BMC offers suites 3 and 17`);
      return s;
    });
    this.#maxSessions = options.maxSessions ?? 4;
    this.#sessionTimeoutMs = options.sessionTimeoutMs ?? 60_000;
    this.#guid = options.guid ?? new Uint8Array(randomBytes(16));
    this.#chassis = new Chassis(this.name, options.power ?? 'off', options.onPowerChange);
  }

  /** Sessions past RAKP 4 (half-open ones from failed logins are not counted). */
  get activeSessions(): number {
    this.#expire();
    let active = 0;
    for (const s of this.#sessions.values()) if (s.state === 'active') active++;
    return active;
  }

  get power(): 'on' | 'off' {
    return this.#chassis.power;
  }

  /** The boot flags (parameter 5) as a client would read them. */
  get bootFlags(): BootFlags {
    return this.#chassis.bootFlags;
  }

  set onPowerChange(hook: ((change: PowerChange) => void) | undefined) {
    this.#chassis.onPowerChange = hook;
  }

  /** Power changed at the machine, not through IPMI (someone pressed the button). */
  setPower(power: 'on' | 'off'): void {
    this.#chassis.setPower(power);
  }

  #drop(reason: string): null {
    this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + 1;
    return null;
  }

  /** Takes one datagram, returns the answer to send back, or null to drop it. Never throws. */
  handle(datagram: Uint8Array): Uint8Array | null {
    this.stats.received++;
    if (this.silent) return this.#drop('silent');
    let answer: Uint8Array | null;
    try {
      answer = this.#handle(datagram);
    } catch (err) {
      return this.#drop(err instanceof IpmiDecodeError ? err.reason : 'internal');
    }
    if (answer) this.stats.answered++;
    return answer;
  }

  #handle(datagram: Uint8Array): Uint8Array | null {
    this.#expire();
    let unknownSession = false;
    const env = decodeEnvelope(datagram, (sid) => {
      const s = this.#sessions.get(sid);
      if (!s?.keys) unknownSession = true;
      return s?.keys ? s.suite.integrityLength : 0;
    });
    if (env.format === 'v1.5') {
      if (env.sessionId !== 0) return this.#drop('v1.5-session');
      const req = decodeRequest(env.message);
      const reply = this.#sessionless(req);
      return reply ? encodeV15(encodeResponse(req, reply.cc, reply.data)) : this.#drop('not-allowed-outside-session');
    }
    if (env.sessionId === 0) return this.#presession(env);
    if (unknownSession) return this.#drop('unknown-session');
    return this.#inSession(env, this.#sessions.get(env.sessionId)!);
  }

  #expire(): void {
    const now = performance.now();
    for (const [id, s] of this.#sessions) if (now - s.lastActivity > this.#sessionTimeoutMs) this.#sessions.delete(id);
  }

  #sessionless(req: IpmiRequest): Reply | null {
    if (is(req, GET_CHANNEL_AUTH_CAPABILITIES)) {
      if (req.data.length < 2) return { cc: CC_REQUEST_LENGTH };
      // Channel 1; IPMI v2.0 extended data; non-null user names; IPMI v2.0 connections supported.
      return { cc: CC_OK, data: new Uint8Array([0x01, (req.data[0]! & 0x80) !== 0 ? 0x80 : 0x00, 0x08, 0x02, 0, 0, 0, 0]) };
    }
    if (is(req, GET_CHANNEL_CIPHER_SUITES)) {
      if (req.data.length < 3) return { cc: CC_REQUEST_LENGTH };
      const records = this.#suites.flatMap((s) => [0xc0, s.id, s.authAlg, 0x40 | s.integrityAlg, 0x80 | s.confidentialityAlg]);
      const index = req.data[2]! & 0x3f;
      return { cc: CC_OK, data: new Uint8Array([0x01, ...records.slice(index * 16, index * 16 + 16)]) };
    }
    return null;
  }

  #presession(env: V20Envelope): Uint8Array | null {
    const payload = openPayload(env, null);
    const reply = (type: number, body: Uint8Array): Uint8Array =>
      encodeV20({ payloadType: type, sessionId: 0, sequence: 0, payload: body });
    switch (env.payloadType) {
      case PAYLOAD_IPMI: {
        const req = decodeRequest(payload);
        const r = this.#sessionless(req);
        return r ? reply(PAYLOAD_IPMI, encodeResponse(req, r.cc, r.data)) : this.#drop('not-allowed-outside-session');
      }
      case PAYLOAD_OPEN_SESSION_REQUEST:
        return reply(PAYLOAD_OPEN_SESSION_RESPONSE, this.#openSession(payload));
      case PAYLOAD_RAKP1: {
        const out = this.#rakp1(payload);
        return out ? reply(PAYLOAD_RAKP2, out) : this.#drop('rakp-unknown-session');
      }
      case PAYLOAD_RAKP3: {
        const out = this.#rakp3(payload);
        return out ? reply(PAYLOAD_RAKP4, out) : this.#drop('rakp-unknown-session');
      }
      default:
        return this.#drop('payload-type');
    }
  }

  #openSession(payload: Uint8Array): Uint8Array {
    const req = decodeOpenSessionRequest(payload);
    const fail = (status: number): Uint8Array =>
      encodeOpenSessionResponse({
        tag: req.tag,
        status,
        maxPrivilege: 0,
        consoleSessionId: req.consoleSessionId,
        bmcSessionId: 0,
        algorithms: null,
      });
    const { auth, integrity, confidentiality } = req.algorithms;
    const suite = this.#suites.find((s) => s.authAlg === auth && s.integrityAlg === integrity && s.confidentialityAlg === confidentiality);
    if (!suite) return fail(this.#suites.some((s) => s.authAlg === auth) ? RAKP_NO_CIPHER_SUITE : RAKP_INVALID_AUTH_ALG);
    if (req.maxPrivilege > 4) return fail(RAKP_INVALID_ROLE);
    if (req.consoleSessionId === 0) return fail(0x02);
    // Sessions that never finished RAKP give their slot back first.
    if (this.#sessions.size >= this.#maxSessions) {
      for (const [id, s] of this.#sessions) if (s.state !== 'active') this.#sessions.delete(id);
      if (this.#sessions.size >= this.#maxSessions) return fail(RAKP_NO_RESOURCES);
    }
    let bmcSessionId = 0;
    while (bmcSessionId === 0 || this.#sessions.has(bmcSessionId)) bmcSessionId = randomInt(1, 0xffffffff);
    const maxPrivilege = req.maxPrivilege === 0 ? 4 : req.maxPrivilege;
    this.#sessions.set(bmcSessionId, {
      bmcSessionId,
      consoleSessionId: req.consoleSessionId,
      suite,
      maxPrivilege,
      state: 'opened',
      user: null,
      rakp: null,
      rakpAnswer: null,
      keys: null,
      privilege: PRIVILEGE_USER,
      outbound: 1,
      window: new SequenceWindow(),
      lastActivity: performance.now(),
    });
    return encodeOpenSessionResponse({
      tag: req.tag,
      status: RAKP_OK,
      maxPrivilege,
      consoleSessionId: req.consoleSessionId,
      bmcSessionId,
      algorithms: req.algorithms,
    });
  }

  #rakp1(payload: Uint8Array): Uint8Array | null {
    const req = decodeRakp1(payload);
    const session = this.#sessions.get(req.bmcSessionId);
    if (!session || session.state === 'active') return null;
    const previous = session.rakp;
    if (
      session.state === 'rakp2' &&
      previous &&
      sameBytes(previous.consoleRandom, req.consoleRandom) &&
      previous.role === req.role &&
      previous.username === req.username
    ) {
      return session.rakpAnswer;
    }
    const fail = (status: number): Uint8Array => {
      this.#sessions.delete(session.bmcSessionId);
      this.stats.authFailures++;
      return encodeRakp2({
        tag: req.tag,
        status,
        consoleSessionId: session.consoleSessionId,
        bmcRandom: new Uint8Array(0),
        bmcGuid: new Uint8Array(0),
        keyExchangeCode: new Uint8Array(0),
      });
    };
    const privilege = req.role & 0x0f;
    if (privilege < 1 || privilege > 5 || (req.role & 0xe0) !== 0) return fail(RAKP_INVALID_ROLE);
    const user = this.#users.find((u) => u.name === req.username);
    if (!user) return fail(RAKP_UNAUTHORIZED_NAME);
    if (privilege > user.privilege || privilege > session.maxPrivilege) return fail(RAKP_UNAUTHORIZED_ROLE);
    const rakp: RakpExchange = {
      consoleSessionId: session.consoleSessionId,
      bmcSessionId: session.bmcSessionId,
      consoleRandom: req.consoleRandom,
      bmcRandom: new Uint8Array(randomBytes(16)),
      bmcGuid: this.#guid,
      role: req.role,
      username: req.username,
    };
    session.user = user;
    session.rakp = rakp;
    session.state = 'rakp2';
    session.lastActivity = performance.now();
    session.rakpAnswer = encodeRakp2({
      tag: req.tag,
      status: RAKP_OK,
      consoleSessionId: session.consoleSessionId,
      bmcRandom: rakp.bmcRandom,
      bmcGuid: this.#guid,
      keyExchangeCode: rakp2Code(session.suite, userKey(user.password), rakp),
    });
    return session.rakpAnswer;
  }

  #rakp3(payload: Uint8Array): Uint8Array | null {
    const req = decodeRakp3(payload);
    const session = this.#sessions.get(req.bmcSessionId);
    if (!session || session.state === 'opened' || !session.user || !session.rakp) return null;
    const { user, rakp, suite } = session;
    const kuid = userKey(user.password);
    if (session.state === 'active') {
      // RAKP 3 again: our RAKP 4 was lost. Answer again only to the holder of the key, and only before the session is used.
      return session.outbound === 1 && sameBytes(rakp3Code(suite, kuid, rakp), req.keyExchangeCode) ? session.rakpAnswer : null;
    }
    if (req.status !== RAKP_OK) {
      this.#sessions.delete(session.bmcSessionId);
      return null;
    }
    if (!sameBytes(rakp3Code(suite, kuid, rakp), req.keyExchangeCode)) {
      this.#sessions.delete(session.bmcSessionId);
      this.stats.authFailures++;
      return encodeRakp4({
        tag: req.tag,
        status: RAKP_INVALID_INTEGRITY,
        consoleSessionId: session.consoleSessionId,
        integrityCheck: new Uint8Array(0),
      });
    }
    const sik = sessionIntegrityKey(suite, kuid, rakp);
    session.keys = deriveKeys(suite, sik);
    session.state = 'active';
    session.lastActivity = performance.now();
    this.stats.sessionsOpened++;
    this.stats.suites[suite.id] = (this.stats.suites[suite.id] ?? 0) + 1;
    session.rakpAnswer = encodeRakp4({
      tag: req.tag,
      status: RAKP_OK,
      consoleSessionId: session.consoleSessionId,
      integrityCheck: rakp4Icv(suite, sik, rakp),
    });
    return session.rakpAnswer;
  }

  #inSession(env: V20Envelope, session: Session): Uint8Array | null {
    const keys = session.keys!;
    const payload = openPayload(env, keys);
    if (!session.window.accept(env.sequence)) return this.#drop('replay');
    if (env.payloadType !== PAYLOAD_IPMI) return this.#drop('payload-type');
    const req = decodeRequest(payload);
    session.lastActivity = performance.now();
    const reply = this.#command(req, session);
    const answer = encodeV20({
      payloadType: PAYLOAD_IPMI,
      sessionId: session.consoleSessionId,
      sequence: session.outbound,
      payload: encodeResponse(req, reply.cc, reply.data),
      keys,
    });
    session.outbound = (session.outbound + 1) >>> 0 || 1;
    return answer;
  }

  #command(req: IpmiRequest, session: Session): Reply {
    const sessionless = this.#sessionless(req);
    if (sessionless) return sessionless;
    const required = REQUIRED_PRIVILEGE.find(([cmd]) => is(req, cmd))?.[1];
    if (required === undefined) return { cc: CC_INVALID_COMMAND };
    if (session.privilege < required) return { cc: CC_INSUFFICIENT_PRIVILEGE };
    const d = req.data;
    if (is(req, SET_SESSION_PRIVILEGE)) {
      if (d.length < 1) return { cc: CC_REQUEST_LENGTH };
      const wanted = d[0]! & 0x0f;
      if (wanted === 0) return { cc: CC_OK, data: new Uint8Array([session.privilege]) };
      if (wanted < PRIVILEGE_USER || wanted > 4) return { cc: 0x80 };
      // 0x81: the level is above what this user may have; 0x82: above the session's limit from RAKP 1.
      if (wanted > session.user!.privilege) return { cc: 0x81 };
      if (wanted > (session.rakp!.role & 0x0f)) return { cc: 0x82 };
      session.privilege = wanted;
      return { cc: CC_OK, data: new Uint8Array([wanted]) };
    }
    if (is(req, CLOSE_SESSION)) {
      if (d.length < 4) return { cc: CC_REQUEST_LENGTH };
      const id = new DataView(d.buffer, d.byteOffset, 4).getUint32(0, true);
      if (!this.#sessions.has(id)) return { cc: 0x87 };
      if (id !== session.bmcSessionId && session.privilege < 4) return { cc: CC_INSUFFICIENT_PRIVILEGE };
      this.#sessions.delete(id);
      return { cc: CC_OK };
    }
    return this.#chassis.command(req);
  }
}
