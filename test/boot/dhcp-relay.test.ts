/**
 * Relay (giaddr) operation on loopback, and the lease contract: an ACK leaves
 * only after its lease is committed, and two servers sharing one store never
 * hand out one address twice.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DhcpServer, type DhcpServerOptions } from '../../controller/boot/dhcp/server.ts';
import { Opt, readIp } from '../../controller/boot/dhcp/options.ts';
import { MemoryBootBackend } from '../../controller/boot/memory-backend.ts';
import { MessageType, requestFor, startRelay, type Relay } from './dhcp-relay.ts';

const range = { start: '10.50.0.10', end: '10.50.0.12', netmask: '255.255.255.0', router: '10.50.0.1', dns: [] };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function serverOn(
  address: string,
  backend: MemoryBootBackend,
  relay: Relay,
  extra: Partial<DhcpServerOptions> = {},
): Promise<{ server: DhcpServer; to: { address: string; port: number } }> {
  const server = new DhcpServer({
    mode: 'full',
    backend,
    serverAddress: address,
    bindAddress: address,
    serverPort: 0,
    relayPort: relay.port,
    range,
    discovery: true,
    boot: { httpPort: 6386, biosFile: 'undionly.kpxe', efiFile: 'ipxe.efi' },
    ...extra,
  });
  const { server: port } = await server.start();
  cleanups.push(() => server.close());
  return { server, to: { address, port: port! } };
}

describe('DHCP through a relay', () => {
  it('answers DISCOVER and REQUEST to the relay, committing the lease before the ACK', async () => {
    const relay = await startRelay('127.0.0.1');
    cleanups.push(() => relay.close());
    const backend = new MemoryBootBackend();
    const { to } = await serverOn('127.0.0.1', backend, relay);
    const mac = '52:54:00:00:00:01';
    let leaseSeenAtAck: unknown = 'no ack';
    relay.onReply((p) => {
      if (p.options.get(Opt.messageType)?.[0] === MessageType.ack) leaseSeenAtAck = backend.leaseOf(mac);
    });
    const offer = await relay.exchange(to, mac, MessageType.discover);
    expect(offer).not.toBeNull();
    expect(offer!.giaddr).toBe('127.0.0.1');
    expect(offer!.yiaddr).toBe('10.50.0.10');
    expect(backend.leaseOf(mac)).toBeNull();
    const ack = await relay.exchange(to, mac, MessageType.request, requestFor(offer!.yiaddr, '127.0.0.1'));
    expect(ack!.options.get(Opt.messageType)?.[0]).toBe(MessageType.ack);
    expect(leaseSeenAtAck).toMatchObject({ mac, ip: '10.50.0.10' });
  });

  it('two servers on one store never lease one address twice', async () => {
    const relay = await startRelay('127.0.0.1');
    cleanups.push(() => relay.close());
    const shared = new MemoryBootBackend();
    const a = await serverOn('127.0.0.2', shared, relay);
    const b = await serverOn('127.0.0.3', shared, relay);
    const offerA = await relay.exchange(a.to, '52:54:00:00:00:0a', MessageType.discover);
    const offerB = await relay.exchange(b.to, '52:54:00:00:00:0b', MessageType.discover);
    // The offer held by A's client is not offered again by B.
    expect(offerB!.yiaddr).not.toBe(offerA!.yiaddr);
    const ackA = await relay.exchange(a.to, '52:54:00:00:00:0a', MessageType.request, requestFor(offerA!.yiaddr, '127.0.0.2'));
    expect(ackA!.options.get(Opt.messageType)?.[0]).toBe(MessageType.ack);
    // B's client asks for A's address (INIT-REBOOT, no server id): B must refuse it.
    const nak = await relay.exchange(b.to, '52:54:00:00:00:0b', MessageType.request, requestFor(offerA!.yiaddr));
    expect(nak!.options.get(Opt.messageType)?.[0]).toBe(MessageType.nak);
    expect(readIp(nak!.options.get(Opt.serverId))).toBe('127.0.0.3');
    expect(shared.leases().filter((l) => l.ip === offerA!.yiaddr)).toHaveLength(1);
    expect(a.server.stats.acks + b.server.stats.acks).toBe(1);
    expect(b.server.stats.naks).toBe(1);
  });

  it('stops offering when the range is exhausted', async () => {
    const relay = await startRelay('127.0.0.1');
    cleanups.push(() => relay.close());
    const backend = new MemoryBootBackend();
    // The router address is outside this range, so all three addresses are usable.
    const { server, to } = await serverOn('127.0.0.1', backend, relay);
    const macs = ['52:54:00:00:01:01', '52:54:00:00:01:02', '52:54:00:00:01:03', '52:54:00:00:01:04'];
    const offers = [];
    for (const mac of macs) offers.push(await relay.exchange(to, mac, MessageType.discover, [], 300));
    expect(offers.slice(0, 3).every((o) => o !== null)).toBe(true);
    expect(offers[3]).toBeNull();
    expect(server.stats.poolExhausted).toBe(1);
    const ack = await relay.exchange(to, macs[0]!, MessageType.request, requestFor(offers[0]!.yiaddr, '127.0.0.1'));
    expect(ack!.yiaddr).toBe(offers[0]!.yiaddr);
    expect(backend.leaseOf(macs[0]!)).not.toBeNull();
  });

  it('NAKs a request for an address outside the range and serves INFORM without an address', async () => {
    const relay = await startRelay('127.0.0.1');
    cleanups.push(() => relay.close());
    const { to } = await serverOn('127.0.0.1', new MemoryBootBackend(), relay);
    const nak = await relay.exchange(to, '52:54:00:00:02:01', MessageType.request, requestFor('192.168.1.5'));
    expect(nak!.options.get(Opt.messageType)?.[0]).toBe(MessageType.nak);
    const ack = await relay.exchange(to, '52:54:00:00:02:01', MessageType.inform);
    expect(ack!.options.get(Opt.messageType)?.[0]).toBe(MessageType.ack);
    expect(ack!.yiaddr).toBe('0.0.0.0');
    expect(ack!.options.has(Opt.leaseTime)).toBe(false);
  });

  it('mode off binds nothing', async () => {
    const server = new DhcpServer({
      mode: 'off',
      backend: new MemoryBootBackend(),
      serverAddress: '127.0.0.1',
      discovery: true,
      boot: { httpPort: 6386, biosFile: 'a', efiFile: 'b' },
    });
    expect(await server.start()).toEqual({ server: null, proxy: null });
    await server.close();
  });
});
