/**
 * Which boot file a PXE client gets (the boot chain): legacy BIOS PXE gets
 * iPXE's undionly.kpxe over TFTP, x86-64 UEFI gets ipxe.efi over TFTP, and
 * iPXE itself (recognised by user class "iPXE" or its option 175) gets the
 * HTTP URL of its per-MAC script. Pure: client facts and config in, a
 * decision out.
 */
import type { DhcpPacket } from './packet.ts';
import { macOf } from './packet.ts';
import { ClientArch, Opt, readClientArchs, readText, readUserClasses } from './options.ts';

export interface BootClient {
  readonly mac: string;
  readonly archs: readonly number[];
  readonly vendorClass: string | null;
  readonly isIpxe: boolean;
  /** Asked for network boot: PXE vendor class, an architecture option, or iPXE. */
  readonly isPxe: boolean;
}

export interface BootFileConfig {
  /** The address clients reach our TFTP and HTTP servers at (next-server). */
  readonly serverAddress: string;
  readonly httpPort: number;
  readonly biosFile: string;
  readonly efiFile: string;
}

export type BootTarget =
  | { readonly kind: 'tftp'; readonly server: string; readonly file: string }
  /** `server` is still sent as next-server: iPXE ignores a proxyDHCP reply whose siaddr is 0. */
  | { readonly kind: 'http'; readonly server: string; readonly url: string };

export function describeClient(packet: DhcpPacket): BootClient {
  const vendorClass = readText(packet.options.get(Opt.vendorClass));
  const isIpxe = packet.options.has(Opt.ipxeEncap) || readUserClasses(packet.options.get(Opt.userClass)).includes('iPXE');
  const archs = readClientArchs(packet.options.get(Opt.clientArch));
  const isPxe = isIpxe || archs.length > 0 || (vendorClass?.startsWith('PXEClient') ?? false);
  return { mac: macOf(packet), archs, vendorClass, isIpxe, isPxe };
}

/** The architecture from option 93, else from the vendor class "PXEClient:Arch:NNNNN:...". */
function archOf(client: BootClient): number {
  if (client.archs.length > 0) return client.archs[0]!;
  const m = /^PXEClient:Arch:(\d{5})/.exec(client.vendorClass ?? '');
  return m ? Number(m[1]) : ClientArch.x86Bios;
}

export function chooseBootFile(client: BootClient, config: BootFileConfig): BootTarget | null {
  if (!client.isPxe) return null;
  if (client.isIpxe)
    return { kind: 'http', server: config.serverAddress, url: `http://${config.serverAddress}:${config.httpPort}/boot/${client.mac}.ipxe` };
  switch (archOf(client)) {
    case ClientArch.x86Bios:
      return { kind: 'tftp', server: config.serverAddress, file: config.biosFile };
    case ClientArch.efiX64:
    case ClientArch.efiBc:
      return { kind: 'tftp', server: config.serverAddress, file: config.efiFile };
    default:
      // 32-bit UEFI, ARM, UEFI HTTP boot: no iPXE binary configured for them.
      return null;
  }
}
