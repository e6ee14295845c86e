/**
 * A relay agent stand-in for in-process tests: a UDP socket on loopback that
 * sends requests with giaddr set to itself and receives the server's replies
 * (RFC 2131: replies to a relay go to giaddr, server port).
 */
import { createSocket, type Socket } from 'node:dgram';
import { BOOTREQUEST, encodeDhcp, parseDhcp, type DhcpPacket } from '../../controller/boot/dhcp/packet.ts';
import { ipToBytes, MessageType, Opt } from '../../controller/boot/dhcp/options.ts';

export interface Relay {
  readonly port: number;
  readonly socket: Socket;
  /** Sends a request from `mac` and resolves with the first reply of the same xid (or null after `ms`). */
  exchange(
    to: { address: string; port: number },
    mac: string,
    type: number,
    options?: [number, Uint8Array][],
    ms?: number,
  ): Promise<DhcpPacket | null>;
  onReply(fn: (p: DhcpPacket) => void): void;
  close(): Promise<void>;
}

let nextXid = 1;

export async function startRelay(address = '127.0.0.1'): Promise<Relay> {
  const socket = createSocket('udp4');
  const waiting = new Map<number, (p: DhcpPacket) => void>();
  const listeners: ((p: DhcpPacket) => void)[] = [];
  socket.on('message', (msg) => {
    let p: DhcpPacket;
    try {
      p = parseDhcp(msg);
    } catch {
      return;
    }
    for (const l of listeners) l(p);
    waiting.get(p.xid)?.(p);
  });
  await new Promise<void>((r) => socket.bind(0, address, () => r()));
  const port = socket.address().port;
  return {
    port,
    socket,
    onReply: (fn) => listeners.push(fn),
    exchange(to, mac, type, options = [], ms = 1000) {
      const xid = nextXid++;
      const chaddr = new Uint8Array(mac.split(':').map((h) => parseInt(h, 16)));
      const wire = encodeDhcp({
        op: BOOTREQUEST,
        xid,
        flags: 0,
        hops: 1,
        giaddr: address,
        chaddr,
        options: [[Opt.messageType, new Uint8Array([type])], ...options],
      });
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(xid);
          resolve(null);
        }, ms);
        waiting.set(xid, (p) => {
          clearTimeout(timer);
          waiting.delete(xid);
          resolve(p);
        });
        socket.send(wire, to.port, to.address);
      });
    },
    close: () => new Promise((r) => socket.close(() => r())),
  };
}

export const requestFor = (ip: string, serverId?: string): [number, Uint8Array][] => [
  [Opt.requestedIp, ipToBytes(ip)],
  ...(serverId ? ([[Opt.serverId, ipToBytes(serverId)]] as [number, Uint8Array][]) : []),
];

export { MessageType };
