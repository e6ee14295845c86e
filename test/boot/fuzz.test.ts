/**
 * Bad input at the running servers: thousands of malformed DHCP and TFTP
 * datagrams (random, truncated, bad option lengths, oversize, wrong
 * opcodes). Each is dropped and counted, and good clients are still served.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Opt, text } from '../../controller/boot/dhcp/options.ts';
import { BOOTREQUEST, encodeDhcp, parseDhcp } from '../../controller/boot/dhcp/packet.ts';
import { DhcpServer } from '../../controller/boot/dhcp/server.ts';
import { MemoryBootBackend } from '../../controller/boot/memory-backend.ts';
import { DirectoryFileSource } from '../../controller/boot/tftp/file-source.ts';
import { encodeRequest, parsePacket } from '../../controller/boot/tftp/packet.ts';
import { TftpServer } from '../../controller/boot/tftp/server.ts';
import { MessageType, requestFor, startRelay } from './dhcp-relay.ts';
import { tftpGet } from './tftp-client.ts';

const COUNT = 4000;

function isMalformed(parse: (b: Uint8Array) => unknown, b: Uint8Array): boolean {
  try {
    parse(b);
    return false;
  } catch {
    return true;
  }
}

async function blast(packets: readonly Uint8Array[], port: number, address = '127.0.0.1'): Promise<void> {
  const socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  // In bursts, so loopback's socket buffer does not drop what we mean to count.
  for (let i = 0; i < packets.length; i += 20) {
    await Promise.all(packets.slice(i, i + 20).map((p) => new Promise<void>((r) => socket.send(p, port, address, () => r()))));
    await new Promise((r) => setTimeout(r, 4));
  }
  await new Promise<void>((r) => socket.close(() => r()));
}

const mutations = (base: Uint8Array): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    fc.uint8Array({ maxLength: 1400 }),
    fc.integer({ min: 0, max: base.length - 1 }).map((n) => base.slice(0, n)),
    fc.tuple(fc.integer({ min: 0, max: base.length - 1 }), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([at, junk]) => {
      const copy = base.slice();
      copy.set(junk.subarray(0, copy.length - at), at);
      return copy;
    }),
    fc.uint8Array({ minLength: 2000, maxLength: 9000 }),
  );

describe('DHCP server under malformed input', () => {
  it('drops and counts thousands of bad packets and keeps leasing to good clients', async () => {
    const relay = await startRelay('127.0.0.1');
    const backend = new MemoryBootBackend();
    const server = new DhcpServer({
      mode: 'full',
      backend,
      serverAddress: '127.0.0.1',
      bindAddress: '127.0.0.1',
      serverPort: 0,
      relayPort: relay.port,
      range: { start: '10.60.0.10', end: '10.60.255.250', netmask: '255.255.0.0', router: null, dns: [] },
      discovery: false,
      boot: { httpPort: 6386, biosFile: 'undionly.kpxe', efiFile: 'ipxe.efi' },
    });
    const port = (await server.start()).server!;
    try {
      const good = encodeDhcp({
        op: BOOTREQUEST,
        xid: 7,
        flags: 0,
        giaddr: '127.0.0.1',
        chaddr: new Uint8Array([0x52, 0x54, 0, 1, 2, 3]),
        options: [
          [Opt.messageType, new Uint8Array([MessageType.discover])],
          [Opt.vendorClass, text('PXEClient:Arch:00000:UNDI:002001')],
          [Opt.clientArch, new Uint8Array([0, 0])],
          [Opt.parameterList, new Uint8Array([1, 3, 6, 66, 67])],
        ],
      });
      const packets = fc.sample(mutations(good), { numRuns: COUNT, seed: 42 });
      const bad = packets.filter((p) => isMalformed(parseDhcp, p)).length;
      expect(bad).toBeGreaterThan(COUNT * 0.6);
      const mac = '52:54:00:0f:0f:0f';
      backend.addNode({ mac, nodeUuid: '44444444-4444-4444-8444-444444444444', fixedAddress: null });
      await blast(packets, port);
      await new Promise((r) => setTimeout(r, 200));
      expect(server.stats.received).toBe(COUNT);
      expect(server.stats.malformed).toBe(bad);
      const offer = await relay.exchange({ address: '127.0.0.1', port }, mac, MessageType.discover);
      expect(offer?.yiaddr).toMatch(/^10\.60\./);
      const ack = await relay.exchange({ address: '127.0.0.1', port }, mac, MessageType.request, requestFor(offer!.yiaddr, '127.0.0.1'));
      expect(ack?.options.get(Opt.messageType)?.[0]).toBe(MessageType.ack);
    } finally {
      await server.close();
      await relay.close();
    }
  });
});

describe('TFTP server under malformed input', () => {
  let dir: string;
  let server: TftpServer;
  let port: number;
  const content = randomBytes(200_000);
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'bm-tftp-fuzz-'));
    await writeFile(path.join(dir, 'file.bin'), content);
    server = new TftpServer({ source: new DirectoryFileSource(dir), address: '127.0.0.1', port: 0, timeoutMs: 200 });
    port = (await server.start()).port;
  });
  afterAll(async () => {
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('drops and counts thousands of bad packets on the request port and keeps serving', async () => {
    const base = encodeRequest(
      'rrq',
      'file.bin',
      'octet',
      new Map([
        ['blksize', '1024'],
        ['tsize', '0'],
        ['windowsize', '8'],
      ]),
    );
    const packets = fc.sample(mutations(base), { numRuns: COUNT, seed: 7 });
    // Mutations that still parse are real requests (mostly for missing files): also fine, but not "malformed".
    const bad = packets.filter((p) => {
      if (isMalformed(parsePacket, p)) return true;
      const k = parsePacket(p).kind;
      return k !== 'rrq' && k !== 'wrq';
    }).length;
    const before = server.stats.malformed;
    await blast(packets, port);
    await new Promise((r) => setTimeout(r, 300));
    expect(server.stats.malformed - before).toBe(bad);
    const got = await tftpGet({ host: '127.0.0.1', port, file: 'file.bin', blksize: 1024, windowsize: 8 });
    expect(got.sha256).toBe(createHash('sha256').update(content).digest('hex'));
  });

  it('ignores junk sent into a running transfer and finishes it', async () => {
    const socket = createSocket('udp4');
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    let tid = 0;
    let received = 0;
    const done = new Promise<void>((resolve) => {
      socket.on('message', (msg, rinfo) => {
        const p = parsePacket(msg);
        if (p.kind !== 'data') return;
        tid = rinfo.port;
        received += p.data.length;
        // Junk first, then the real ACK: the transfer must not be disturbed.
        for (const junk of fc.sample(fc.uint8Array({ maxLength: 40 }), { numRuns: 5, seed: p.block })) socket.send(junk, tid, '127.0.0.1');
        socket.send(new Uint8Array([0, 4, msg[2]!, msg[3]!]), tid, '127.0.0.1');
        if (p.data.length < 512) resolve();
      });
    });
    socket.send(encodeRequest('rrq', 'file.bin'), port, '127.0.0.1');
    await done;
    expect(received).toBe(content.length);
    socket.close();
  });
});
