/**
 * The DHCPv4 server, in one of three modes:
 * - full: addresses from the configured range, leases through the backend
 *   (committed before the ACK is sent), only enrolled MACs unless discovery
 *   is on, fixed addresses for ports that have one;
 * - proxy: proxyDHCP on 67 and 4011, boot information for PXE clients only,
 *   so an existing DHCP server keeps assigning addresses;
 * - off.
 * Relayed requests (giaddr) are answered to the relay. Malformed datagrams
 * are dropped and counted; no packet can throw out of a handler.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { AddressPool, BootBackend } from '../backend.ts';
import type { Logger } from 'pino';
import { BootConfigError, LeaseConflictError } from '../errors.ts';
import { errorText, LogLimiter, silentLogger } from '../log-limiter.ts';
import { Admission } from './admission.ts';
import { chooseBootFile, describeClient, type BootFileConfig } from './boot-file.ts';
import { BOOTREQUEST, macOf, parseDhcp, type DhcpPacket } from './packet.ts';
import { ipToInt, MessageType, Opt, readIp } from './options.ts';
import { buildAddressReply, buildInformAck, buildNak, buildProxyReply, replyDestination, type NetworkParams } from './reply.ts';

export type DhcpMode = 'full' | 'proxy' | 'off';

export interface DhcpRange {
  readonly start: string;
  readonly end: string;
  readonly netmask: string;
  readonly router: string | null;
  readonly dns: readonly string[];
}

export interface DhcpServerOptions {
  readonly mode: DhcpMode;
  readonly backend: BootBackend;
  /** Our address on the segment: server identifier, next-server, HTTP host. */
  readonly serverAddress: string;
  /** 0.0.0.0 receives broadcasts; a specific address receives only unicast (relay, tests). */
  readonly bindAddress?: string;
  readonly serverPort?: number;
  readonly clientPort?: number;
  /** proxyDHCP port (PXE spec); null disables it. */
  readonly proxyPort?: number | null;
  /** Port replies to a relay (giaddr) go to; 67 in the field. */
  readonly relayPort?: number;
  readonly range?: DhcpRange;
  readonly leaseTimeSec?: number;
  readonly offerHoldMs?: number;
  readonly discovery: boolean;
  readonly boot: Omit<BootFileConfig, 'serverAddress'>;
  /** Exchanges handled at once (default 32, about twice the lease store's pool); the rest queue (see admission.ts). */
  readonly maxInFlight?: number;
  /** Exchanges queued beyond maxInFlight before new ones are shed (default 2048). */
  readonly maxQueued?: number;
  /** Once the oldest queued DISCOVER waited this long, the newest go first (default 250 ms; see admission.ts). */
  readonly targetQueueDelayMs?: number;
  /** The controller's logger; silent by default. Lines carry the MAC and the transaction id. */
  readonly log?: Logger;
}

export interface DhcpStats {
  received: number;
  malformed: number;
  ignored: number;
  unknownMac: number;
  offers: number;
  acks: number;
  naks: number;
  releases: number;
  declines: number;
  informs: number;
  proxyOffers: number;
  proxyAcks: number;
  poolExhausted: number;
  backendErrors: number;
  overload: number;
}

function emptyStats(): DhcpStats {
  return {
    received: 0,
    malformed: 0,
    ignored: 0,
    unknownMac: 0,
    offers: 0,
    acks: 0,
    naks: 0,
    releases: 0,
    declines: 0,
    informs: 0,
    proxyOffers: 0,
    proxyAcks: 0,
    poolExhausted: 0,
    backendErrors: 0,
    overload: 0,
  };
}

async function bindSocket(address: string, port: number): Promise<Socket> {
  const socket = createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address, port }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.setBroadcast(true);
  // A PXE storm (a rack powering on) arrives as one burst: a deep receive
  // queue absorbs it instead of dropping (capped by net.core.rmem_max).
  for (const bytes of [4 << 20, 1 << 20]) {
    try {
      socket.setRecvBufferSize(bytes);
      break;
    } catch {
      /* above rmem_max: try smaller */
    }
  }
  socket.on('error', () => undefined);
  return socket;
}

/** Transaction ids as DHCP tools print them (dhcpdump, Kea): 0x-prefixed hex. */
function xidText(xid: number): string {
  return `0x${xid.toString(16).padStart(8, '0')}`;
}

export class DhcpServer {
  readonly stats: DhcpStats = emptyStats();
  private readonly o: DhcpServerOptions;
  private readonly ports: { server: number; client: number; proxy: number | null; relay: number };
  private readonly sockets: Socket[] = [];
  private sender: Socket | null = null;
  private proxySocket: Socket | null = null;
  private readonly admission: Admission;
  private readonly pool: AddressPool | null;
  private readonly net: NetworkParams | null;
  private readonly log: Logger;
  private readonly limiter = new LogLimiter();

  constructor(options: DhcpServerOptions) {
    this.o = options;
    this.log = (options.log ?? silentLogger).child({ component: 'dhcp' });
    this.admission = new Admission(
      {
        concurrency: options.maxInFlight ?? 32,
        maxQueued: options.maxQueued ?? 2048,
        targetDelayMs: options.targetQueueDelayMs ?? 250,
        maxWaitMs: 3000,
      },
      () => {
        this.stats.overload++;
        const admitted = this.limiter.admit('overload');
        if (admitted)
          this.log.warn(
            { running: this.admission.running, queued: this.admission.queued, suppressed: admitted.suppressed },
            'DHCP overloaded: exchange shed before the lease store',
          );
      },
    );
    const server = options.serverPort ?? 67;
    this.ports = {
      server,
      client: options.clientPort ?? 68,
      proxy: options.proxyPort === undefined ? 4011 : options.proxyPort,
      relay: options.relayPort ?? server,
    };
    const r = options.range;
    if (options.mode === 'full' && !r) throw new BootConfigError('range_start', 'DHCP mode "full" needs range_start and range_end');
    this.pool = r ? { start: r.start, end: r.end, exclude: [options.serverAddress, ...(r.router ? [r.router] : [])] } : null;
    this.net = r ? { netmask: r.netmask, router: r.router, dns: r.dns, leaseTimeSec: options.leaseTimeSec ?? 3600 } : null;
  }

  /** Binds the sockets; returns the bound ports. Does nothing in mode off. */
  async start(): Promise<{ server: number | null; proxy: number | null }> {
    if (this.o.mode === 'off') return { server: null, proxy: null };
    const bind = this.o.bindAddress ?? '0.0.0.0';
    const main = await bindSocket(bind, this.ports.server);
    main.on('message', (m, r) => this.onMessage(m, r, false));
    this.sockets.push(main);
    this.sender = main;
    if (bind === '0.0.0.0') {
      // Node cannot bind to a device; a second socket on our own address makes
      // limited broadcasts leave through that address's interface, and receives
      // unicast (relayed) requests, which the kernel prefers to deliver to it.
      const own = await bindSocket(this.o.serverAddress, this.ports.server);
      own.on('message', (m, r) => this.onMessage(m, r, false));
      this.sockets.push(own);
      this.sender = own;
    }
    let proxyPort: number | null = null;
    if (this.o.mode === 'proxy' && this.ports.proxy !== null) {
      const proxy = await bindSocket(bind, this.ports.proxy);
      proxy.on('message', (m, r) => this.onMessage(m, r, true));
      this.sockets.push(proxy);
      this.proxySocket = proxy;
      proxyPort = proxy.address().port;
    }
    return { server: main.address().port, proxy: proxyPort };
  }

  async close(): Promise<void> {
    const sockets = this.sockets.splice(0);
    this.sender = null;
    this.proxySocket = null;
    await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo, viaProxyPort: boolean): void {
    this.stats.received++;
    let packet: DhcpPacket;
    try {
      packet = parseDhcp(msg);
    } catch {
      this.stats.malformed++;
      return;
    }
    if (packet.op !== BOOTREQUEST) {
      this.stats.ignored++;
      return;
    }
    // A REQUEST completes an exchange; under overload it goes before new DISCOVERs.
    const isRequest = packet.options.get(Opt.messageType)?.[0] === MessageType.request;
    this.admission.submit(isRequest, () => this.handle(packet, rinfo, viaProxyPort));
  }

  private handle(packet: DhcpPacket, rinfo: RemoteInfo, viaProxyPort: boolean): Promise<void> {
    const handled = this.o.mode === 'proxy' ? this.handleProxy(packet, rinfo, viaProxyPort) : this.handleFull(packet);
    return handled.catch((err: unknown) => {
      this.stats.backendErrors++;
      // The backend broke (not "no such MAC"): the operator needs to see why, but a storm must not flood the log.
      const admitted = this.limiter.admit('backend');
      if (admitted) {
        this.log.error(
          {
            mac: macOf(packet),
            xid: xidText(packet.xid),
            type: packet.options.get(Opt.messageType)?.[0],
            err: errorText(err),
            ...(admitted.suppressed > 0 ? { suppressed: admitted.suppressed } : {}),
          },
          'DHCP exchange failed in the lease backend',
        );
      }
    });
  }

  private send(bytes: Uint8Array, address: string, port: number, via: Socket | null = this.sender): void {
    try {
      via?.send(bytes, port, address);
    } catch {
      /* socket closed during shutdown */
    }
  }

  private reply(request: DhcpPacket, bytes: Uint8Array, isNak = false): void {
    const to = replyDestination(request, isNak, { client: this.ports.client, relay: this.ports.relay });
    this.send(bytes, to.address, to.port);
  }

  private bootConfig(): BootFileConfig {
    return { serverAddress: this.o.serverAddress, ...this.o.boot };
  }

  private inRange(ip: string): boolean {
    if (!this.pool) return false;
    const n = ipToInt(ip);
    return n >= ipToInt(this.pool.start) && n <= ipToInt(this.pool.end) && !this.pool.exclude.includes(ip);
  }

  private async handleFull(p: DhcpPacket): Promise<void> {
    const type = p.options.get(Opt.messageType)![0]!;
    const mac = macOf(p);
    const pool = this.pool!;
    const net = this.net!;
    const serverId = this.o.serverAddress;
    const node = await this.o.backend.lookup(mac);
    if (node === null && !this.o.discovery) {
      this.stats.unknownMac++;
      this.log.debug({ mac, xid: xidText(p.xid) }, 'unknown MAC, not answered');
      return;
    }
    const client = describeClient(p);
    const target = chooseBootFile(client, this.bootConfig());
    switch (type) {
      case MessageType.discover: {
        let ip: string | null = node?.fixedAddress ?? null;
        if (ip === null)
          ip = await this.o.backend.allocateLease({
            mac,
            pool,
            requestedIp: readIp(p.options.get(Opt.requestedIp)),
            holdMs: this.o.offerHoldMs ?? 30_000,
          });
        if (ip === null) {
          this.stats.poolExhausted++;
          const admitted = this.limiter.admit('exhausted');
          if (admitted)
            this.log.warn(
              { mac, xid: xidText(p.xid), range: `${pool.start}-${pool.end}`, suppressed: admitted.suppressed },
              'address pool exhausted, DISCOVER not answered',
            );
          return;
        }
        this.stats.offers++;
        this.reply(p, buildAddressReply(p, 'offer', serverId, ip, net, target));
        return;
      }
      case MessageType.request: {
        const chosenServer = readIp(p.options.get(Opt.serverId));
        if (chosenServer !== null && chosenServer !== serverId) {
          // SELECTING another server's offer: not ours to answer (our hold just expires).
          this.stats.ignored++;
          return;
        }
        const ip = readIp(p.options.get(Opt.requestedIp)) ?? (p.ciaddr !== '0.0.0.0' ? p.ciaddr : null);
        if (ip === null) {
          this.stats.ignored++;
          return;
        }
        const acceptable = node?.fixedAddress ? ip === node.fixedAddress : this.inRange(ip);
        if (!acceptable) {
          this.stats.naks++;
          this.reply(p, buildNak(p, serverId, 'requested address not available'), true);
          return;
        }
        try {
          // The lease is durable before the ACK leaves: no two servers can ACK one address.
          await this.o.backend.commitLease({ mac, ip, expiresAt: Date.now() + net.leaseTimeSec * 1000 });
        } catch (err) {
          if (!(err instanceof LeaseConflictError)) throw err;
          this.log.debug({ mac, xid: xidText(p.xid), ip }, 'REQUEST lost to another client: NAK');
          this.stats.naks++;
          this.reply(p, buildNak(p, serverId, 'address leased to another client'), true);
          return;
        }
        this.stats.acks++;
        this.log.debug({ mac, xid: xidText(p.xid), ip }, 'lease committed: ACK');
        this.reply(p, buildAddressReply(p, 'ack', serverId, ip, net, target));
        return;
      }
      case MessageType.release:
        this.stats.releases++;
        await this.o.backend.releaseLease(mac, p.ciaddr);
        return;
      case MessageType.decline: {
        const ip = readIp(p.options.get(Opt.requestedIp));
        this.stats.declines++;
        if (ip) await this.o.backend.declineLease(mac, ip);
        return;
      }
      case MessageType.inform:
        this.stats.informs++;
        this.reply(p, buildInformAck(p, serverId, net, target));
        return;
      default:
        this.stats.ignored++;
    }
  }

  private async handleProxy(p: DhcpPacket, rinfo: RemoteInfo, viaProxyPort: boolean): Promise<void> {
    const type = p.options.get(Opt.messageType)![0]!;
    const client = describeClient(p);
    // proxyDHCP answers PXE clients only; everyone else is the other server's business.
    if (!client.isPxe) {
      this.stats.ignored++;
      return;
    }
    const node = await this.o.backend.lookup(client.mac);
    if (node === null && !this.o.discovery) {
      this.stats.unknownMac++;
      this.log.debug({ mac: client.mac, xid: xidText(p.xid) }, 'unknown MAC, not answered');
      return;
    }
    const target = chooseBootFile(client, this.bootConfig());
    if (target === null) {
      this.stats.ignored++;
      return;
    }
    const serverId = this.o.serverAddress;
    if (viaProxyPort) {
      if (type !== MessageType.request && type !== MessageType.inform) {
        this.stats.ignored++;
        return;
      }
      // PXE spec 2.2.4: the reply to a port-4011 request goes back to where it
      // came from, and from port 4011 (iPXE drops a ProxyDHCPACK from any other port).
      this.stats.proxyAcks++;
      this.send(buildProxyReply(p, 'ack', serverId, target), rinfo.address, rinfo.port, this.proxySocket);
      return;
    }
    if (type === MessageType.discover) {
      this.stats.proxyOffers++;
      this.reply(p, buildProxyReply(p, 'offer', serverId, target));
      return;
    }
    if (type === MessageType.request && readIp(p.options.get(Opt.serverId)) === serverId) {
      this.stats.proxyAcks++;
      this.reply(p, buildProxyReply(p, 'ack', serverId, target));
      return;
    }
    this.stats.ignored++;
  }
}
