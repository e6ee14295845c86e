/**
 * What a PXE ROM does on the wire, for the proxyDHCP test (no packaged client
 * speaks proxyDHCP): broadcast a DISCOVER with the PXE vendor class, collect
 * offers, take the address from the offer that has one, REQUEST it, then ask
 * the proxyDHCP server on port 4011 for the boot file (PXE 2.1, 2.2.4).
 * Run inside the client namespace:
 *   node pxe-client.ts MAC ARCH [ipxe]   → one JSON line with what it got.
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { BOOTREPLY, BOOTREQUEST, encodeDhcp, parseDhcp, type DhcpPacket } from '../../controller/boot/dhcp/packet.ts';
import { ipToBytes, MessageType, Opt, readIp, readText, text } from '../../controller/boot/dhcp/options.ts';

const [macText = '', archText = '0', ipxe] = process.argv.slice(2);
const chaddr = new Uint8Array(macText.split(':').map((h) => parseInt(h, 16)));
const arch = Number(archText);
const xid = randomInt(1, 0x7fffffff);
const vendor = `PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:002001`;

function request(type: number, extra: [number, Uint8Array][], ciaddr = '0.0.0.0'): Uint8Array {
  const options: [number, Uint8Array][] = [
    [Opt.messageType, new Uint8Array([type])],
    [Opt.vendorClass, text(vendor)],
    [Opt.clientArch, new Uint8Array([arch >> 8, arch & 255])],
    [Opt.clientNdi, new Uint8Array([1, 2, 1])],
    [Opt.clientUuid, new Uint8Array([0, ...Array.from({ length: 16 }, (_, i) => i)])],
    [Opt.parameterList, new Uint8Array([1, 3, 6, 43, 60, 66, 67, 97])],
    ...(ipxe ? ([[Opt.userClass, text('iPXE')]] as [number, Uint8Array][]) : []),
    ...extra,
  ];
  return encodeDhcp({ op: BOOTREQUEST, xid, flags: 0x8000, chaddr, ciaddr, options });
}

function collect(socket: Socket, ms: number, want: (p: DhcpPacket) => boolean): Promise<DhcpPacket[]> {
  return new Promise((resolve) => {
    const got: DhcpPacket[] = [];
    const on = (msg: Buffer): void => {
      try {
        const p = parseDhcp(msg);
        if (p.op === BOOTREPLY && p.xid === xid && want(p)) got.push(p);
      } catch {
        /* not for us */
      }
    };
    socket.on('message', on);
    setTimeout(() => {
      socket.off('message', on);
      resolve(got);
    }, ms);
  });
}

const typeOf = (p: DhcpPacket): number => p.options.get(Opt.messageType)?.[0] ?? 0;
const describe = (p: DhcpPacket): Record<string, unknown> => ({
  type: typeOf(p),
  yiaddr: p.yiaddr,
  siaddr: p.siaddr,
  file: p.file,
  serverId: readIp(p.options.get(Opt.serverId)),
  vendorClass: readText(p.options.get(Opt.vendorClass)),
  option67: readText(p.options.get(Opt.bootFileName)),
  echoedUuid: p.options.has(Opt.clientUuid),
});

const { execFileSync } = await import('node:child_process');
// A ROM sends from a raw socket; a UDP socket on an address-less interface
// needs a route for the limited broadcast (removed with the namespace).
execFileSync('ip', ['route', 'replace', '255.255.255.255/32', 'dev', 'eth0']);
const socket = createSocket({ type: 'udp4', reuseAddr: true });
await new Promise<void>((r) => socket.bind(68, '0.0.0.0', () => r()));
socket.setBroadcast(true);
const offersP = collect(socket, 2000, (p) => typeOf(p) === MessageType.offer);
socket.send(request(MessageType.discover, []), 67, '255.255.255.255');
const offers = await offersP;
const addressOffer = offers.find((p) => p.yiaddr !== '0.0.0.0');
const proxyOffer = offers.find((p) => p.yiaddr === '0.0.0.0' && readText(p.options.get(Opt.vendorClass)) === 'PXEClient');
const result: Record<string, unknown> = { offers: offers.map(describe) };
if (addressOffer) {
  const ackP = collect(socket, 2000, (p) => typeOf(p) === MessageType.ack || typeOf(p) === MessageType.nak);
  socket.send(
    request(MessageType.request, [
      [Opt.requestedIp, ipToBytes(addressOffer.yiaddr)],
      [Opt.serverId, addressOffer.options.get(Opt.serverId)!],
    ]),
    67,
    '255.255.255.255',
  );
  const acks = await ackP;
  result.addressAck = acks[0] ? describe(acks[0]) : null;
  const ack = acks[0];
  if (ack && proxyOffer && typeOf(ack) === MessageType.ack) {
    const proxyServer = readIp(proxyOffer.options.get(Opt.serverId))!;
    // The ROM now owns an address: the proxy request is unicast from it.
    execFileSync('ip', ['addr', 'add', `${ack.yiaddr}/24`, 'dev', 'eth0']);
    const proxyAckP = collect(socket, 2000, (p) => typeOf(p) === MessageType.ack);
    socket.send(request(MessageType.request, [], ack.yiaddr), 4011, proxyServer);
    const proxyAcks = await proxyAckP;
    result.proxyAck = proxyAcks[0] ? describe(proxyAcks[0]) : null;
    execFileSync('ip', ['addr', 'del', `${ack.yiaddr}/24`, 'dev', 'eth0']);
  }
}
socket.close();
try {
  execFileSync('ip', ['route', 'del', '255.255.255.255/32', 'dev', 'eth0'], { stdio: 'ignore' });
} catch {
  /* gone with the address */
}
process.stdout.write(JSON.stringify(result) + '\n');
