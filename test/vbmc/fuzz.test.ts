/**
 * Bad input, thousands of cases: truncated, malformed, replayed and wrongly
 * signed RMCP+ datagrams thrown at the virtual BMC and at the client's
 * decoders. Nothing crashes, everything bad is dropped and counted, and a
 * session that was working keeps working.
 */
import dgram from 'node:dgram';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseAuthCapabilities,
  parseBootFlagsResponse,
  parseChassisStatus,
  parseCipherSuiteRecords,
  parseDeviceId,
} from '../../controller/drivers/power/ipmi/commands.ts';
import { SUITE_17, SUITE_3, deriveKeys } from '../../controller/drivers/power/ipmi/crypto.ts';
import { IpmiDriver } from '../../controller/drivers/power/ipmi/driver.ts';
import { IpmiDecodeError } from '../../controller/drivers/power/ipmi/errors.ts';
import { decodeResponse, decodeRequest, encodeRequest } from '../../controller/drivers/power/ipmi/message.ts';
import { PAYLOAD_IPMI, decodeEnvelope, encodeV20, openPayload } from '../../controller/drivers/power/ipmi/packet.ts';
import { SessionPool } from '../../controller/drivers/power/ipmi/pool.ts';
import {
  decodeOpenSessionRequest,
  decodeOpenSessionResponse,
  decodeRakp1,
  decodeRakp2,
  decodeRakp3,
  decodeRakp4,
} from '../../controller/drivers/power/ipmi/rakp.ts';
import { BmcTimeoutError } from '../../controller/drivers/power/errors.ts';
import { VirtualBmc } from '../../controller/lab/index.ts';

const RUNS = 2000;

/** A virtual BMC on UDP that records every datagram it receives, so real traffic can be mutated and replayed. */
interface Tapped {
  readonly bmc: VirtualBmc;
  readonly port: number;
  readonly seen: Uint8Array[];
  close(): Promise<void>;
}

async function tappedBmc(): Promise<Tapped> {
  const bmc = new VirtualBmc({ name: 'fuzz', users: [{ name: 'admin', password: 'fuzz-pw', privilege: 4 }] });
  const seen: Uint8Array[] = [];
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    seen.push(new Uint8Array(msg));
    const answer = bmc.handle(new Uint8Array(msg));
    if (answer) socket.send(answer, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  return { bmc, port: socket.address().port, seen, close: () => new Promise((r) => socket.close(() => r())) };
}

let tap: Tapped;
let pool: SessionPool;
let driver: IpmiDriver;

beforeAll(async () => {
  tap = await tappedBmc();
  pool = new SessionPool({ attemptTimeoutMs: 300, retries: 2 });
  driver = new IpmiDriver(
    { nodeUuid: 'fuzz-node', driver: 'ipmi', address: '127.0.0.1', port: tap.port, username: 'admin', password: 'fuzz-pw' },
    { pool },
  );
  await driver.setPowerState('on');
  await driver.setBootDevice('pxe', { persistent: false, uefi: false });
  expect(await driver.getPowerState()).toBe('on');
});

afterAll(async () => {
  await pool?.close();
  await tap?.close();
});

function totalDropped(bmc: VirtualBmc): number {
  return Object.values(bmc.stats.dropped).reduce((a, b) => a + b, 0);
}

describe('virtual BMC under bad input', () => {
  it('drops replayed datagrams of a live session and counts them', () => {
    const recorded = [...tap.seen];
    const before = tap.bmc.stats.dropped.replay ?? 0;
    let answered = 0;
    for (const d of recorded) {
      // Pre-session datagrams (session ID 0) may legitimately be answered again; in-session ones must not.
      const inSession = d.length > 10 && d[4] === 0x06 && new DataView(d.buffer, d.byteOffset).getUint32(6, true) !== 0;
      if (inSession && tap.bmc.handle(d) !== null) answered++;
    }
    expect(answered).toBe(0);
    expect((tap.bmc.stats.dropped.replay ?? 0) - before).toBeGreaterThanOrEqual(3);
  });

  it('never throws on arbitrary bytes, truncations or bit flips, and answers no forged in-session packet', () => {
    const recorded = [...tap.seen];
    const inSession = recorded.filter((d) => d[4] === 0x06 && new DataView(d.buffer, d.byteOffset).getUint32(6, true) !== 0);
    expect(inSession.length).toBeGreaterThan(0);
    const receivedBefore = tap.bmc.stats.received;
    const droppedBefore = totalDropped(tap.bmc);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.tuple(fc.constantFrom(...recorded), fc.nat()).map(([d, n]) => d.slice(0, n % (d.length + 1))),
          fc.tuple(fc.constantFrom(...inSession), fc.nat(), fc.integer({ min: 0, max: 7 })).map(([d, at, bit]) => {
            const copy = d.slice();
            copy[at % copy.length]! ^= 1 << bit;
            return copy;
          }),
          // A live session's header with a forged body and a fresh sequence number: the signature cannot match.
          fc
            .tuple(fc.constantFrom(...inSession), fc.uint8Array({ minLength: 1, maxLength: 80 }), fc.integer({ min: 1, max: 0xffffffff }))
            .map(([d, body, seq]) => {
              const copy = new Uint8Array(16 + body.length);
              copy.set(d.subarray(0, 16));
              new DataView(copy.buffer).setUint32(10, seq, true);
              new DataView(copy.buffer).setUint16(14, body.length, true);
              copy.set(body, 16);
              return copy;
            }),
        ),
        (datagram) => {
          const answer = tap.bmc.handle(datagram);
          const claimsSession =
            datagram.length >= 10 && datagram[4] === 0x06 && new DataView(datagram.buffer, datagram.byteOffset).getUint32(6, true) !== 0;
          if (claimsSession) expect(answer).toBeNull();
        },
      ),
      { numRuns: RUNS },
    );
    expect(tap.bmc.stats.received - receivedBefore).toBe(RUNS);
    expect(totalDropped(tap.bmc) - droppedBefore).toBeGreaterThan(RUNS / 2);
    expect(tap.bmc.stats.dropped.internal ?? 0).toBe(0);
  });

  it('keeps serving the good session afterwards, without re-opening it', async () => {
    const opened = pool.stats().sessionsOpened;
    expect(await driver.getPowerState()).toBe('on');
    await driver.setPowerState('off');
    expect(tap.bmc.power).toBe('off');
    expect(pool.stats().sessionsOpened).toBe(opened);
  });
});

describe('client decoders under bad input', () => {
  const decoders: readonly ((b: Uint8Array) => unknown)[] = [
    (b) => decodeEnvelope(b, () => 12),
    (b) => decodeEnvelope(b, () => 16),
    (b) => decodeEnvelope(b, () => 0),
    decodeResponse,
    decodeRequest,
    decodeOpenSessionRequest,
    decodeOpenSessionResponse,
    decodeRakp1,
    decodeRakp2,
    decodeRakp3,
    decodeRakp4,
    parseAuthCapabilities,
    parseDeviceId,
    parseChassisStatus,
    parseBootFlagsResponse,
    parseCipherSuiteRecords,
  ];

  it('reject arbitrary bytes only with IpmiDecodeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.integer({ min: 0, max: decoders.length - 1 }), (bytes, which) => {
        try {
          decoders[which]!(bytes);
        } catch (err) {
          expect(err).toBeInstanceOf(IpmiDecodeError);
        }
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('reject every bit flip of a signed response, for suites 3 and 17', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(SUITE_3, SUITE_17),
        fc.uint8Array({ minLength: 20, maxLength: 20 }),
        fc.uint8Array({ maxLength: 40 }),
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        (suite, sik, data, at, bit) => {
          const keys = deriveKeys(suite, sik);
          const good = encodeV20({
            payloadType: PAYLOAD_IPMI,
            sessionId: 0x1234,
            sequence: 7,
            payload: encodeRequest(0x06, 0x01, 3, data),
            keys,
          });
          const env = decodeEnvelope(good, () => suite.integrityLength);
          if (env.format !== 'v2.0') throw new Error('expected RMCP+');
          expect(decodeRequest(openPayload(env, keys)).data).toEqual(data);
          const bad = good.slice();
          // Bytes 1 and 2 of the RMCP header (reserved, RMCP sequence) are not covered by the AuthCode.
          const index = 4 + (at % (bad.length - 4));
          bad[index]! ^= 1 << bit;
          let rejected = false;
          try {
            const e = decodeEnvelope(bad, () => suite.integrityLength);
            if (e.format === 'v2.0') openPayload(e, keys);
          } catch (err) {
            expect(err).toBeInstanceOf(IpmiDecodeError);
            rejected = true;
          }
          expect(rejected).toBe(true);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('the client behind a link that forges and replays answers', () => {
  it('drops forged and replayed answers, counts them, and completes every call', async () => {
    const bmc = new VirtualBmc({ power: 'on' });
    const socket = dgram.createSocket('udp4');
    let previous: Uint8Array | null = null;
    let flips = 0;
    socket.on('message', (msg, rinfo) => {
      const answer = bmc.handle(new Uint8Array(msg));
      if (!answer) return;
      const inSession = answer[4] === 0x06 && new DataView(answer.buffer, answer.byteOffset).getUint32(6, true) !== 0;
      if (inSession) {
        // Before the real answer: a copy with one bit flipped past the RMCP header, and the previous answer again.
        const forged = answer.slice();
        const at = 4 + ((flips++ * 7) % (forged.length - 4));
        forged[at]! ^= 1 << (flips % 8);
        socket.send(forged, rinfo.port, rinfo.address);
        if (previous) socket.send(previous, rinfo.port, rinfo.address);
        previous = answer;
      }
      socket.send(answer, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    const own = new SessionPool({ attemptTimeoutMs: 300 });
    try {
      const d = new IpmiDriver(
        {
          nodeUuid: 'mitm-node',
          driver: 'ipmi',
          address: '127.0.0.1',
          port: socket.address().port,
          username: 'admin',
          password: 'password',
        },
        { pool: own },
      );
      for (let i = 0; i < 25; i++) {
        expect(await d.getPowerState()).toBe(bmc.power);
        await d.setPowerState(bmc.power === 'on' ? 'off' : 'on');
      }
      // Every in-session answer after the first came with one forged and one replayed copy ahead of it.
      expect(own.stats().droppedDatagrams + own.stats().unclaimedDatagrams).toBeGreaterThanOrEqual(50);
      expect(own.stats().sessionsOpened).toBe(1);
    } finally {
      await own.close();
      await new Promise<void>((r) => socket.close(() => r()));
    }
  });
});

describe('a BMC that answers garbage', () => {
  it('ends in a timeout error within the budget, the garbage counted', async () => {
    const socket = dgram.createSocket('udp4');
    socket.on('message', (_msg, rinfo) => {
      // Well-formed RMCP, IPMI v1.5 header, then nonsense where the response should be.
      socket.send(
        Buffer.from([0x06, 0x00, 0xff, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x04, 0xde, 0xad, 0xbe, 0xef]),
        rinfo.port,
        rinfo.address,
      );
      socket.send(Buffer.from('garbage'), rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    const own = new SessionPool({ attemptTimeoutMs: 200, retries: 2 });
    try {
      const d = new IpmiDriver(
        { nodeUuid: 'garbage-node', driver: 'ipmi', address: '127.0.0.1', port: socket.address().port, username: 'admin', password: 'x' },
        { pool: own, timeoutMs: 3000 },
      );
      const started = performance.now();
      const err = await d.getPowerState().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BmcTimeoutError);
      expect((err as Error).message).toMatch(/bad datagram\(s\) dropped/);
      expect(performance.now() - started).toBeLessThan(1500);
      expect(own.stats().droppedDatagrams + own.stats().unclaimedDatagrams).toBeGreaterThanOrEqual(3);
    } finally {
      await own.close();
      await new Promise<void>((r) => socket.close(() => r()));
    }
  });
});
