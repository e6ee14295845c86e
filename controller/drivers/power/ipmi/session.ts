/**
 * One RMCP+ session with one BMC: establishment (Get Channel Authentication
 * Capabilities, Get Channel Cipher Suites, Open Session, RAKP 1-4, Set
 * Session Privilege Level), signed and encrypted requests with per-attempt
 * retransmission inside a deadline, the receive-side sequence window, and
 * Close Session. Not safe for concurrent requests: the pool hands a session
 * to one caller at a time.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { BmcAuthError, BmcCommandError, BmcTimeoutError, type BmcContext } from '../errors.ts';
import {
  CC_OK,
  CLOSE_SESSION,
  GET_CHANNEL_AUTH_CAPABILITIES,
  GET_CHANNEL_CIPHER_SUITES,
  SET_SESSION_PRIVILEGE,
  authCapabilitiesRequest,
  cipherSuitesRequest,
  parseAuthCapabilities,
  parseCipherSuiteRecords,
  type CommandId,
} from './commands.ts';
import {
  deriveKeys,
  rakp2Code,
  rakp3Code,
  rakp4Icv,
  sameBytes,
  sessionIntegrityKey,
  suiteByAlgorithms,
  suiteById,
  u32le,
  userKey,
  type CipherSuite,
  type RakpExchange,
  type SessionKeys,
} from './crypto.ts';
import { IpmiDecodeError } from './errors.ts';
import { decodeResponse, encodeRequest, type IpmiResponse } from './message.ts';
import {
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
  peekSessionId,
} from './packet.ts';
import {
  RAKP_INVALID_AUTH_ALG,
  RAKP_NO_CIPHER_SUITE,
  RAKP_OK,
  decodeOpenSessionResponse,
  decodeRakp2,
  decodeRakp4,
  encodeOpenSessionRequest,
  encodeRakp1,
  encodeRakp3,
  rakpStatusText,
} from './rakp.ts';
import type { UdpTransport } from './transport.ts';
import { SequenceWindow } from './window.ts';

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

export interface SessionOptions {
  /** 4 ADMINISTRATOR (default) or 3 OPERATOR. */
  readonly privilege: number;
  /** Wait for one answer before retransmitting. */
  readonly attemptTimeoutMs: number;
  /** Retransmissions after the first send. */
  readonly retries: number;
  /** Cipher suites in order of preference. */
  readonly suites: readonly number[];
}

/** Name-only lookup (bit 4 of the RAKP 1 role byte, section 13.20). */
const NAME_ONLY_LOOKUP = 0x10;
/** Status codes after which the next suite is worth trying. */
const SUITE_REFUSED = new Set([RAKP_INVALID_AUTH_ALG, 0x05, 0x10, RAKP_NO_CIPHER_SUITE]);

function completionText(cc: number): string {
  const names: Readonly<Record<number, string>> = {
    0xc1: 'invalid command',
    0xc7: 'request data length invalid',
    0xc9: 'parameter out of range',
    0xcc: 'invalid data field in request',
    0xd4: 'insufficient privilege level',
    0xd5: 'not supported in present state',
    0x80: 'parameter not supported',
  };
  return `${names[cc] ?? 'completion code'} (0x${cc.toString(16).padStart(2, '0')})`;
}

export class IpmiSession {
  readonly #transport: UdpTransport;
  readonly #address: string;
  readonly #port: number;
  readonly #credentials: Credentials;
  readonly #options: SessionOptions;
  readonly #context: BmcContext;
  #keys: SessionKeys | null = null;
  #consoleSessionId = 0;
  #bmcSessionId = 0;
  #outbound = 1;
  #requestSequence = randomInt(1, 64);
  #window = new SequenceWindow();
  /** Suite the BMC agreed to, remembered by the pool so re-opens skip the discovery. */
  suite: CipherSuite | null = null;
  lastUsed = 0;
  /** Datagrams that claimed to be ours and failed a check (signature, window, checksum...). */
  dropped = 0;

  constructor(
    transport: UdpTransport,
    address: string,
    port: number,
    credentials: Credentials,
    options: SessionOptions,
    context: BmcContext,
  ) {
    this.#transport = transport;
    this.#address = address;
    this.#port = port;
    this.#credentials = credentials;
    this.#options = options;
    this.#context = context;
  }

  get isOpen(): boolean {
    return this.#keys !== null;
  }

  /**
   * Sends `packet(attempt)` until `accept` returns a value, retransmitting after
   * each attempt timeout, within the retry budget and the deadline. `accept`
   * returns undefined for datagrams meant for someone else and throws
   * IpmiDecodeError (counted) for datagrams that are ours but bad.
   */
  async #exchange<T>(
    what: string,
    packet: (attempt: number) => Uint8Array,
    accept: (datagram: Uint8Array) => T | undefined,
    deadline: number,
  ): Promise<T> {
    let settle: ((value: T) => void) | undefined;
    const answered = new Promise<T>((resolve) => (settle = resolve));
    let done = false;
    const stop = this.#transport.listen(this.#address, this.#port, (datagram) => {
      if (done) return false;
      let value: T | undefined;
      try {
        value = accept(datagram);
      } catch {
        // Decoders throw IpmiDecodeError on bad input; anything else is counted the same way rather than
        // thrown out of the socket's event handler, where it would take the process down.
        this.dropped++;
        return true;
      }
      if (value === undefined) return false;
      done = true;
      settle?.(value);
      return true;
    });
    try {
      for (let attempt = 0; attempt <= this.#options.retries; attempt++) {
        const left = deadline - performance.now();
        if (left <= 0) break;
        await this.#transport.send(this.#address, this.#port, packet(attempt));
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<undefined>(
          (resolve) => (timer = setTimeout(resolve, Math.min(left, this.#options.attemptTimeoutMs), undefined)),
        );
        const result = await Promise.race([answered.then((v) => ({ v })), timedOut]);
        clearTimeout(timer);
        if (result) return result.v;
      }
      const dropped = this.dropped > 0 ? `, ${this.dropped} bad datagram(s) dropped` : '';
      throw new BmcTimeoutError(this.#context, `no valid answer to ${what} after ${this.#options.retries + 1} attempt(s)${dropped}`);
    } finally {
      done = true;
      stop();
    }
  }

  #nextRequestSequence(): number {
    this.#requestSequence = (this.#requestSequence % 63) + 1;
    return this.#requestSequence;
  }

  #matchResponse(message: Uint8Array, command: CommandId, sequence: number): IpmiResponse | undefined {
    const response = decodeResponse(message);
    if (response.sequence !== sequence || response.command !== command.command || response.netFn !== command.netFn) return undefined;
    return response;
  }

  /** A command outside any session (section 13.14: session ID 0, no authentication). */
  async #sessionless(command: CommandId, data: Uint8Array, v15: boolean, deadline: number): Promise<IpmiResponse> {
    const sequence = this.#nextRequestSequence();
    const message = encodeRequest(command.netFn, command.command, sequence, data);
    const bytes = v15 ? encodeV15(message) : encodeV20({ payloadType: PAYLOAD_IPMI, sessionId: 0, sequence: 0, payload: message });
    return this.#exchange(
      `command 0x${command.command.toString(16)}`,
      () => bytes,
      (datagram) => {
        if (peekSessionId(datagram) !== 0) return undefined;
        const env = decodeEnvelope(datagram, () => 0);
        if (env.format === 'v1.5') return this.#matchResponse(env.message, command, sequence);
        if (env.payloadType !== PAYLOAD_IPMI) return undefined;
        return this.#matchResponse(openPayload(env, null), command, sequence);
      },
      deadline,
    );
  }

  async #discoverSuites(deadline: number): Promise<number[]> {
    const records: number[] = [];
    for (let index = 0; index < 8; index++) {
      const res = await this.#sessionless(GET_CHANNEL_CIPHER_SUITES, cipherSuitesRequest(index), true, deadline);
      if (res.completionCode !== CC_OK || res.data.length < 1) break;
      records.push(...res.data.subarray(1));
      if (res.data.length < 17) break;
    }
    const offered = parseCipherSuiteRecords(new Uint8Array(records))
      .filter((r) => suiteByAlgorithms(r.auth, r.integrity, r.confidentiality)?.id === r.id)
      .map((r) => r.id);
    return this.#options.suites.filter((id) => offered.includes(id));
  }

  /** Establishes the session. Throws BmcAuthError, BmcTimeoutError or BmcCommandError. */
  async open(deadline: number, suiteHint: CipherSuite | null = null): Promise<void> {
    const caps = await this.#sessionless(GET_CHANNEL_AUTH_CAPABILITIES, authCapabilitiesRequest(this.#options.privilege), true, deadline);
    if (caps.completionCode !== CC_OK)
      throw new BmcCommandError(this.#context, `Get Channel Authentication Capabilities: ${completionText(caps.completionCode)}`);
    if (!parseAuthCapabilities(caps.data).ipmiV20)
      throw new BmcCommandError(this.#context, 'the BMC does not offer IPMI v2.0 (RMCP+) on this channel');
    let candidates: number[];
    if (suiteHint) candidates = [suiteHint.id];
    else {
      // Some BMCs (ipmi_sim) do not answer Get Channel Cipher Suites usefully: then try our preferences in order.
      // The BMC answered Get Channel Authentication Capabilities, so silence here means "not supported".
      const offered = await this.#discoverSuites(deadline).catch(() => []);
      candidates = offered.length > 0 ? offered : [...this.#options.suites];
    }
    let lastRefusal = '';
    for (const [index, id] of candidates.entries()) {
      const suite = suiteById(id);
      if (!suite) continue;
      let refused: string | null;
      try {
        refused = await this.#openWith(suite, deadline);
      } catch (err) {
        // Some BMCs ignore an Open Session for a suite they lack instead of refusing it; the BMC did answer
        // Get Channel Authentication Capabilities, so try the next suite while the deadline allows.
        if (!(err instanceof BmcTimeoutError) || index === candidates.length - 1) throw err;
        refused = `suite ${id}: no answer to Open Session`;
      }
      if (refused === null) {
        this.suite = suite;
        return;
      }
      lastRefusal = refused;
    }
    throw new BmcAuthError(this.#context, `no cipher suite accepted (tried ${candidates.join(', ')}): ${lastRefusal}`);
  }

  /** Returns null on success, or why the BMC refused this suite. */
  async #openWith(suite: CipherSuite, deadline: number): Promise<string | null> {
    const consoleSessionId = randomInt(1, 0xffffffff);
    const tag = randomInt(0, 256);
    const request = encodeV20({
      payloadType: PAYLOAD_OPEN_SESSION_REQUEST,
      sessionId: 0,
      sequence: 0,
      payload: encodeOpenSessionRequest({
        tag,
        maxPrivilege: this.#options.privilege,
        consoleSessionId,
        algorithms: { auth: suite.authAlg, integrity: suite.integrityAlg, confidentiality: suite.confidentialityAlg },
      }),
    });
    const opened = await this.#exchange(
      'Open Session',
      () => request,
      (datagram) => {
        if (peekSessionId(datagram) !== 0) return undefined;
        const env = decodeEnvelope(datagram, () => 0);
        if (env.format !== 'v2.0' || env.payloadType !== PAYLOAD_OPEN_SESSION_RESPONSE) return undefined;
        const res = decodeOpenSessionResponse(openPayload(env, null));
        return res.tag === tag && res.consoleSessionId === consoleSessionId ? res : undefined;
      },
      deadline,
    );
    if (opened.status !== RAKP_OK) {
      if (SUITE_REFUSED.has(opened.status)) return `suite ${suite.id}: ${rakpStatusText(opened.status)}`;
      throw new BmcCommandError(this.#context, `Open Session refused: ${rakpStatusText(opened.status)}`);
    }
    const algs = opened.algorithms;
    if (
      !algs ||
      algs.auth !== suite.authAlg ||
      algs.integrity !== suite.integrityAlg ||
      algs.confidentiality !== suite.confidentialityAlg
    ) {
      return `suite ${suite.id}: the BMC answered with other algorithms`;
    }
    const bmcSessionId = opened.bmcSessionId;
    const consoleRandom = new Uint8Array(randomBytes(16));
    const role = this.#options.privilege | NAME_ONLY_LOOKUP;
    const { username, password } = this.#credentials;
    const rakp1 = encodeV20({
      payloadType: PAYLOAD_RAKP1,
      sessionId: 0,
      sequence: 0,
      payload: encodeRakp1({ tag, bmcSessionId, consoleRandom, role, username }),
    });
    const rakp2 = await this.#exchange(
      'RAKP 1',
      () => rakp1,
      (datagram) => {
        if (peekSessionId(datagram) !== 0) return undefined;
        const env = decodeEnvelope(datagram, () => 0);
        if (env.format !== 'v2.0' || env.payloadType !== PAYLOAD_RAKP2) return undefined;
        const res = decodeRakp2(openPayload(env, null));
        return res.tag === tag && res.consoleSessionId === consoleSessionId ? res : undefined;
      },
      deadline,
    );
    if (rakp2.status !== RAKP_OK) throw new BmcAuthError(this.#context, `RAKP 2: ${rakpStatusText(rakp2.status)}`);
    const exchange: RakpExchange = {
      consoleSessionId,
      bmcSessionId,
      consoleRandom,
      bmcRandom: rakp2.bmcRandom,
      bmcGuid: rakp2.bmcGuid,
      role,
      username,
    };
    const kuid = userKey(password);
    if (!sameBytes(rakp2Code(suite, kuid, exchange), rakp2.keyExchangeCode)) {
      throw new BmcAuthError(this.#context, `RAKP 2 key-exchange code does not match: wrong password for user "${username}"`);
    }
    const rakp3 = encodeV20({
      payloadType: PAYLOAD_RAKP3,
      sessionId: 0,
      sequence: 0,
      payload: encodeRakp3({ tag, status: RAKP_OK, bmcSessionId, keyExchangeCode: rakp3Code(suite, kuid, exchange) }),
    });
    const rakp4 = await this.#exchange(
      'RAKP 3',
      () => rakp3,
      (datagram) => {
        if (peekSessionId(datagram) !== 0) return undefined;
        const env = decodeEnvelope(datagram, () => 0);
        if (env.format !== 'v2.0' || env.payloadType !== PAYLOAD_RAKP4) return undefined;
        const res = decodeRakp4(openPayload(env, null));
        return res.tag === tag && res.consoleSessionId === consoleSessionId ? res : undefined;
      },
      deadline,
    );
    if (rakp4.status !== RAKP_OK) throw new BmcAuthError(this.#context, `RAKP 4: ${rakpStatusText(rakp4.status)}`);
    const sik = sessionIntegrityKey(suite, kuid, exchange);
    if (!sameBytes(rakp4Icv(suite, sik, exchange), rakp4.integrityCheck)) {
      throw new BmcAuthError(this.#context, 'RAKP 4 integrity check does not match (the BMC may have a BMC key set)');
    }
    this.#keys = deriveKeys(suite, sik);
    this.#consoleSessionId = consoleSessionId;
    this.#bmcSessionId = bmcSessionId;
    this.#outbound = 1;
    this.#window = new SequenceWindow();
    const granted = await this.request(SET_SESSION_PRIVILEGE, new Uint8Array([this.#options.privilege]), deadline);
    if (granted.completionCode !== CC_OK) {
      this.#keys = null;
      throw new BmcAuthError(
        this.#context,
        `Set Session Privilege Level ${this.#options.privilege}: ${completionText(granted.completionCode)}`,
      );
    }
    return null;
  }

  /** One command inside the session; the completion code is the caller's to judge. */
  async request(command: CommandId, data: Uint8Array, deadline: number): Promise<IpmiResponse> {
    const keys = this.#keys;
    if (!keys) throw new BmcCommandError(this.#context, 'session is not open');
    const sequence = this.#nextRequestSequence();
    const message = encodeRequest(command.netFn, command.command, sequence, data);
    const response = await this.#exchange(
      `command 0x${command.command.toString(16)}`,
      () => {
        // A retransmission is a new packet: a new session sequence number, the same request sequence.
        const outbound = this.#outbound;
        this.#outbound = (this.#outbound + 1) >>> 0 || 1;
        return encodeV20({ payloadType: PAYLOAD_IPMI, sessionId: this.#bmcSessionId, sequence: outbound, payload: message, keys });
      },
      (datagram) => {
        if (peekSessionId(datagram) !== this.#consoleSessionId) return undefined;
        const env = decodeEnvelope(datagram, (sid) => (sid === this.#consoleSessionId ? keys.suite.integrityLength : 0));
        if (env.format !== 'v2.0' || env.sessionId !== this.#consoleSessionId) return undefined;
        const payload = openPayload(env, keys);
        if (!this.#window.accept(env.sequence))
          throw new IpmiDecodeError('replay', `session sequence ${env.sequence} is outside the window or repeated`);
        if (env.payloadType !== PAYLOAD_IPMI) return undefined;
        return this.#matchResponse(payload, command, sequence);
      },
      deadline,
    );
    this.lastUsed = performance.now();
    return response;
  }

  /** Like request, but a non-zero completion code is a BmcCommandError. */
  async call(command: CommandId, data: Uint8Array, deadline: number, what: string): Promise<Uint8Array> {
    const res = await this.request(command, data, deadline);
    if (res.completionCode !== CC_OK) throw new BmcCommandError(this.#context, `${what}: ${completionText(res.completionCode)}`);
    return res.data;
  }

  /** Close Session (section 22.19); best effort, the BMC times the session out anyway. */
  async close(deadline: number): Promise<void> {
    if (!this.#keys) return;
    try {
      await this.request(CLOSE_SESSION, u32le(this.#bmcSessionId), deadline);
    } finally {
      this.#keys = null;
    }
  }

  /** Forgets the keys without telling the BMC: after a timeout the session may already be gone. */
  abandon(): void {
    this.#keys = null;
  }
}
