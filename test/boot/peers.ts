/**
 * Peer programs the boot tests run, and the Debian package that provides
 * each: a missing peer fails the test with the install command, never a skip.
 */
import { accessSync, constants } from 'node:fs';

export const PEER_PACKAGES = {
  '/usr/bin/tftp': 'tftp-hpa',
  '/usr/sbin/in.tftpd': 'tftpd-hpa',
  '/usr/sbin/udhcpc': 'udhcpc',
  '/usr/bin/busybox': 'busybox-static',
  '/usr/sbin/dhclient': 'isc-dhcp-client',
  '/usr/sbin/dnsmasq': 'dnsmasq-base',
  '/usr/sbin/perfdhcp': 'kea-admin',
  '/usr/sbin/kea-dhcp4': 'kea-dhcp4-server',
  '/usr/bin/qemu-system-x86_64': 'qemu-system-x86',
  '/usr/lib/ipxe/undionly.kpxe': 'ipxe',
  '/usr/lib/ipxe/ipxe.efi': 'ipxe',
  '/usr/lib/ipxe/qemu/pxe-virtio.rom': 'ipxe-qemu',
  '/usr/sbin/ip': 'iproute2',
  '/usr/share/OVMF/OVMF_CODE.fd': 'ovmf',
  '/usr/share/OVMF/OVMF_VARS.fd': 'ovmf',
} as const;

export type PeerPath = keyof typeof PEER_PACKAGES;

/** Returns the path, or throws an error naming the Debian package to install. */
export function requirePeer(file: PeerPath): string {
  try {
    accessSync(file, constants.R_OK);
  } catch {
    const pkg = PEER_PACKAGES[file];
    throw new Error(`${file} is missing: install Debian's package with \`apt-get install -y ${pkg}\``);
  }
  return file;
}
