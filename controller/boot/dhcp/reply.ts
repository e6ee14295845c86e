/**
 * Building replies (pure): the address part of full mode, the boot part
 * shared with proxy mode, and where a reply goes (RFC 2131 section 4.1).
 */
import type { BootTarget } from './boot-file.ts';
import { BOOTREPLY, BROADCAST_FLAG, encodeDhcp, type DhcpPacket } from './packet.ts';
import { ipList, ipToBytes, MessageType, Opt, text, u32 } from './options.ts';

export interface NetworkParams {
  readonly netmask: string;
  readonly router: string | null;
  readonly dns: readonly string[];
  readonly leaseTimeSec: number;
}

type OptionList = [number, Uint8Array][];

/** PXE spec option 43 sub-option 6 = 8: skip boot server discovery, boot the file named in this reply. */
const PXE_DISCOVERY_CONTROL = new Uint8Array([6, 1, 8, 255]);

function bootOptions(
  request: DhcpPacket,
  target: BootTarget | null,
  proxy: boolean,
): { options: OptionList; siaddr: string; file: string } {
  const options: OptionList = [];
  if (target === null) return { options, siaddr: '0.0.0.0', file: '' };
  const wants = request.options.get(Opt.parameterList) ?? new Uint8Array();
  const file = target.kind === 'tftp' ? target.file : target.url;
  const siaddr = target.server;
  const vendorClass = request.options.get(Opt.vendorClass);
  const isPxeRom = vendorClass !== undefined && new TextDecoder('latin1').decode(vendorClass).startsWith('PXEClient');
  // A PXE ROM only trusts boot information that comes with vendor class "PXEClient" (PXE 2.1 section 2.2).
  if (isPxeRom || proxy) {
    options.push([Opt.vendorClass, text('PXEClient')]);
    options.push([Opt.vendorSpecific, PXE_DISCOVERY_CONTROL]);
  }
  const uuid = request.options.get(Opt.clientUuid);
  if (proxy && uuid !== undefined) options.push([Opt.clientUuid, uuid]);
  if (target.kind === 'tftp' && wants.includes(Opt.tftpServerName)) options.push([Opt.tftpServerName, text(target.server)]);
  // The file field holds 127 bytes; a longer URL must go in option 67.
  if (wants.includes(Opt.bootFileName) || file.length > 127) options.push([Opt.bootFileName, text(file)]);
  return { options, siaddr, file: file.length > 127 ? '' : file };
}

/** The fields every reply copies from its request (RFC 2131 table 3). */
function echoed(request: DhcpPacket): Pick<Parameters<typeof encodeDhcp>[0], 'op' | 'xid' | 'flags' | 'htype' | 'giaddr' | 'chaddr'> {
  return { op: BOOTREPLY, xid: request.xid, flags: request.flags, htype: request.htype, giaddr: request.giaddr, chaddr: request.chaddr };
}

/** Subnet mask, router and DNS servers of the segment. */
function networkOptions(net: NetworkParams): OptionList {
  const options: OptionList = [[Opt.subnetMask, ipToBytes(net.netmask)]];
  if (net.router) options.push([Opt.router, ipToBytes(net.router)]);
  if (net.dns.length > 0) options.push([Opt.dns, ipList(net.dns)]);
  return options;
}

export function buildAddressReply(
  request: DhcpPacket,
  type: 'offer' | 'ack',
  serverId: string,
  yiaddr: string,
  net: NetworkParams,
  target: BootTarget | null,
): Uint8Array {
  const lease = net.leaseTimeSec;
  const options: OptionList = [
    [Opt.messageType, new Uint8Array([MessageType[type]])],
    [Opt.serverId, ipToBytes(serverId)],
    [Opt.leaseTime, u32(lease)],
    [Opt.renewalTime, u32(Math.floor(lease / 2))],
    [Opt.rebindingTime, u32(Math.floor((lease * 7) / 8))],
    ...networkOptions(net),
  ];
  const boot = bootOptions(request, target, false);
  options.push(...boot.options);
  return encodeDhcp({
    ...echoed(request),
    ciaddr: type === 'ack' ? request.ciaddr : '0.0.0.0',
    yiaddr,
    siaddr: boot.siaddr,
    file: boot.file,
    options,
  });
}

export function buildInformAck(request: DhcpPacket, serverId: string, net: NetworkParams, target: BootTarget | null): Uint8Array {
  const options: OptionList = [
    [Opt.messageType, new Uint8Array([MessageType.ack])],
    [Opt.serverId, ipToBytes(serverId)],
    ...networkOptions(net),
  ];
  const boot = bootOptions(request, target, false);
  options.push(...boot.options);
  return encodeDhcp({ ...echoed(request), ciaddr: request.ciaddr, siaddr: boot.siaddr, file: boot.file, options });
}

export function buildNak(request: DhcpPacket, serverId: string, reason: string): Uint8Array {
  return encodeDhcp({
    ...echoed(request),
    // RFC 2131 4.3.2: a NAK relayed through giaddr asks the relay to broadcast it.
    flags: request.giaddr !== '0.0.0.0' ? request.flags | BROADCAST_FLAG : request.flags,
    options: [
      [Opt.messageType, new Uint8Array([MessageType.nak])],
      [Opt.serverId, ipToBytes(serverId)],
      [Opt.message, text(reason)],
    ],
  });
}

/** proxyDHCP (PXE spec 2.2.2; RFC 4578): boot information only, never an address. */
export function buildProxyReply(request: DhcpPacket, type: 'offer' | 'ack', serverId: string, target: BootTarget): Uint8Array {
  const boot = bootOptions(request, target, true);
  return encodeDhcp({
    ...echoed(request),
    ciaddr: request.ciaddr,
    siaddr: boot.siaddr,
    file: boot.file,
    options: [[Opt.messageType, new Uint8Array([MessageType[type]])], [Opt.serverId, ipToBytes(serverId)], ...boot.options],
  });
}

export interface Destination {
  readonly address: string;
  readonly port: number;
}

/** RFC 2131 4.1: relay first, then a configured client, else broadcast (we cannot fill the ARP cache from Node). */
export function replyDestination(request: DhcpPacket, isNak: boolean, ports: { client: number; relay: number }): Destination {
  if (request.giaddr !== '0.0.0.0') return { address: request.giaddr, port: ports.relay };
  if (!isNak && request.ciaddr !== '0.0.0.0') return { address: request.ciaddr, port: ports.client };
  return { address: '255.255.255.255', port: ports.client };
}
