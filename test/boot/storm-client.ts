/**
 * A PXE boot storm from one relay agent: N PXE clients (vendor class
 * PXEClient, arch 0) behind a relay (giaddr = the socket's own address), each
 * behaving as a PXE ROM does: DISCOVER, retransmitted after 4, 8, 16 and
 * 32 s without an offer (PXE 2.1, section 2.2.1); REQUEST for the first offer,
 * retransmitted on the same schedule; back to DISCOVER (a fresh xid) on a NAK.
 * Used by the storm test (a few hundred clients) and the storm bench (1,000).
 */
import { createSocket } from 'node:dgram';
import { BOOTREQUEST, encodeDhcp, macOf, parseDhcp, type DhcpPacket } from '../../controller/boot/dhcp/packet.ts';
import { ipToBytes, MessageType, Opt, readIp } from '../../controller/boot/dhcp/options.ts';

export interface StormOptions {
  /** Where the relay forwards to (its helper addresses; port 67 in the field): every request goes to each. */
  readonly servers: readonly { readonly address: string; readonly port: number }[];
  /** The relay's own address (giaddr) and port; replies to a relay come to giaddr (port 67 in the field). */
  readonly relay: { readonly address: string; readonly port: number };
  readonly clients: number;
  /** The first four bytes of every MAC, as "52:54:00:a0"; the client index fills the last two. */
  readonly macPrefix: string;
  /** A client without a lease this long after the start gives up. */
  readonly deadlineMs: number;
  /** Time over which the clients power on (0: all at once). */
  readonly spreadMs?: number;
  /** Waits before each retransmission; PXE ROMs use 4, 8, 16, 32 s. */
  readonly retransmitMs?: readonly number[];
}

export interface StormResult {
  readonly clients: number;
  readonly leased: number;
  /** Time until the last client was ACKed (null when some never were). */
  readonly allLeasedMs: number | null;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly discovers: number;
  readonly requests: number;
  readonly offers: number;
  readonly acks: number;
  readonly naks: number;
  /** Addresses ACKed to two clients (must be 0). */
  readonly duplicateAddresses: number;
  /** MACs that never got a lease. */
  readonly unleased: readonly string[];
  readonly leases: readonly { readonly mac: string; readonly ip: string }[];
}

const PXE_VENDOR = new TextEncoder().encode('PXEClient:Arch:00000:UNDI:002001');
const PARAMS = new Uint8Array([1, 3, 6, 43, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135]);

interface Client {
  readonly index: number;
  readonly mac: string;
  readonly chaddr: Uint8Array;
  readonly uuid: Uint8Array;
  xid: number;
  phase: 'idle' | 'discover' | 'request' | 'done';
  attempt: number;
  offered: string | null;
  serverId: string | null;
  timer: NodeJS.Timeout | null;
  leasedAtMs: number | null;
}

export async function runStorm(o: StormOptions): Promise<StormResult> {
  const schedule = o.retransmitMs ?? [4000, 8000, 16000, 32000];
  const socket = createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(o.relay.port, o.relay.address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  try {
    socket.setRecvBufferSize(4 << 20);
  } catch {
    /* above rmem_max: the default must do */
  }
  const prefix = o.macPrefix.split(':').map((h) => parseInt(h, 16));
  const xidBase = (Math.random() * 0x7fff) << 16;
  const clients: Client[] = Array.from({ length: o.clients }, (_, index) => {
    const chaddr = new Uint8Array([...prefix, (index >> 8) & 0xff, index & 0xff]);
    const uuid = new Uint8Array(17);
    uuid[15] = index >> 8;
    uuid[16] = index & 0xff;
    const c: Omit<Client, 'mac'> = {
      index,
      chaddr,
      uuid,
      xid: 0,
      phase: 'idle',
      attempt: 0,
      offered: null,
      serverId: null,
      timer: null,
      leasedAtMs: null,
    };
    return { ...c, mac: [...chaddr].map((b) => b.toString(16).padStart(2, '0')).join(':') };
  });
  const byXid = new Map<number, Client>();
  let nextXid = 1;
  const counts = { discovers: 0, requests: 0, offers: 0, acks: 0, naks: 0 };
  const t0 = performance.now();
  let pending = o.clients;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));

  const send = (c: Client, type: number): void => {
    const options: [number, Uint8Array][] = [
      [Opt.messageType, new Uint8Array([type])],
      [Opt.parameterList, PARAMS],
      [Opt.vendorClass, PXE_VENDOR],
      [Opt.clientArch, new Uint8Array([0, 0])],
      [Opt.clientNdi, new Uint8Array([1, 2, 1])],
      [Opt.clientUuid, c.uuid],
    ];
    if (type === MessageType.request) options.push([Opt.requestedIp, ipToBytes(c.offered!)], [Opt.serverId, ipToBytes(c.serverId!)]);
    const secs = Math.min(0xffff, Math.floor((performance.now() - t0) / 1000));
    const wire = encodeDhcp({
      op: BOOTREQUEST,
      xid: c.xid,
      flags: 0x8000,
      hops: 1,
      secs,
      giaddr: o.relay.address,
      chaddr: c.chaddr,
      options,
    });
    if (type === MessageType.discover) counts.discovers++;
    else counts.requests++;
    for (const server of o.servers) socket.send(wire, server.port, server.address);
  };
  const arm = (c: Client): void => {
    if (c.timer) clearTimeout(c.timer);
    const wait = schedule[Math.min(c.attempt, schedule.length - 1)]!;
    c.timer = setTimeout(() => {
      c.timer = null;
      c.attempt++;
      if (c.phase === 'request' && c.attempt >= schedule.length) {
        // No ACK after every retry: start over, as a ROM does after its REQUEST retries.
        discover(c);
        return;
      }
      send(c, c.phase === 'request' ? MessageType.request : MessageType.discover);
      arm(c);
    }, wait);
  };
  const discover = (c: Client): void => {
    byXid.delete(c.xid);
    c.xid = (xidBase | nextXid++) >>> 0;
    byXid.set(c.xid, c);
    c.phase = 'discover';
    c.attempt = 0;
    c.offered = null;
    c.serverId = null;
    send(c, MessageType.discover);
    arm(c);
  };

  socket.on('message', (msg) => {
    let p: DhcpPacket;
    try {
      p = parseDhcp(msg);
    } catch {
      return;
    }
    const c = byXid.get(p.xid);
    if (!c || macOf(p) !== c.mac) return;
    const type = p.options.get(Opt.messageType)?.[0];
    if (type === MessageType.offer) {
      counts.offers++;
      if (c.phase !== 'discover') return;
      c.phase = 'request';
      c.attempt = 0;
      c.offered = p.yiaddr;
      c.serverId = readIp(p.options.get(Opt.serverId)) ?? p.siaddr;
      send(c, MessageType.request);
      arm(c);
    } else if (type === MessageType.ack) {
      counts.acks++;
      if (c.phase !== 'request' || p.yiaddr !== c.offered) return;
      c.phase = 'done';
      c.leasedAtMs = performance.now() - t0;
      if (c.timer) clearTimeout(c.timer);
      byXid.delete(c.xid);
      if (--pending === 0) finish();
    } else if (type === MessageType.nak) {
      counts.naks++;
      if (c.phase !== 'request') return;
      discover(c);
    }
  });

  const spread = o.spreadMs ?? 0;
  const starters = clients.map((c) => setTimeout(() => discover(c), spread > 0 ? (c.index * spread) / o.clients : 0));
  const deadline = setTimeout(finish, o.deadlineMs);
  await finished;
  clearTimeout(deadline);
  for (const t of starters) clearTimeout(t);
  for (const c of clients) if (c.timer) clearTimeout(c.timer);
  await new Promise<void>((resolve) => socket.close(() => resolve()));

  const done = clients.filter((c) => c.leasedAtMs !== null);
  const times = done.map((c) => c.leasedAtMs!).sort((a, b) => a - b);
  const pct = (q: number): number | null =>
    times.length === 0 ? null : Math.round(times[Math.min(times.length - 1, Math.floor(q * times.length))]!);
  const leases = done.map((c) => ({ mac: c.mac, ip: c.offered! }));
  return {
    clients: o.clients,
    leased: done.length,
    allLeasedMs: done.length === o.clients ? Math.round(times[times.length - 1] ?? 0) : null,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
    ...counts,
    duplicateAddresses: leases.length - new Set(leases.map((l) => l.ip)).size,
    unleased: clients.filter((c) => c.leasedAtMs === null).map((c) => c.mac),
    leases,
  };
}
