/**
 * The tenant image the end-to-end test deploys: a small whole-disk image a
 * BIOS boots like a real one. MBR boot code from Debian's syslinux-common,
 * one FAT32 partition made with mtools holding SYSLINUX (Debian's syslinux:
 * the mtools installer of the same boot loader as extlinux, so no loop
 * mount is needed), the ramdisk's kernel and a tiny initramfs whose init
 * prints GUEST_MARKER, finds the config drive by its label config-2 and
 * prints the user data. Returned as qcow2 (qemu-img), as tenants upload.
 *
 * The agent writes the config drive at the end of the disk without adding a
 * partition entry (agent/configdrive/placement.ts), so blkid cannot see it;
 * the init looks for the ISO 9660 volume labelled config-2 where the agent
 * puts one, on 1 MiB boundaries in the disk's last 64 MiB, and mounts it
 * through a loop device at that offset.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { cpioArchive, type CpioEntry } from '../../ramdisk/cpio.ts';
import { extractDeb, fetchDeb, resolveKernelPackage } from '../../ramdisk/debs.ts';
import { selectModules } from '../../ramdisk/module-tree.ts';
import { requireBinary } from '../support/ipmi-sim.ts';

const run = promisify(execFile);
const MIB = 1024 * 1024;
export const GUEST_MARKER = 'E2E-GUEST-IMAGE-BOOTED';

const INIT = `#!/bin/sh
/bin/busybox mkdir -p /proc /sys /dev /mnt
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo 4 > /proc/sys/kernel/printk
while read -r m; do insmod "/lib/modules/$(uname -r)/$m"; done < /etc/modules
echo "${GUEST_MARKER} on $(uname -r)"
n=0; while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
mib=$(( $(cat /sys/block/vda/size) / 2048 ))
found=""
k=$((mib - 1))
while [ $k -ge $((mib - 64)) ] && [ $k -ge 0 ]; do
  # An ISO 9660 primary volume descriptor sits 32 KiB into the volume: "CD001", then the label.
  if dd if=/dev/vda bs=2048 skip=$((k * 512 + 16)) count=1 2>/dev/null | head -c 80 | grep -q 'CD001.*config-2'; then found=$k; break; fi
  k=$((k - 1))
done
if [ -n "$found" ]; then
  echo "config-2 found at $found MiB"
  losetup -r -o $((found * 1048576)) /dev/loop0 /dev/vda && mount -t iso9660 -o ro /dev/loop0 /mnt
  echo "user-data-begin"
  cat /mnt/openstack/latest/user_data
  echo "user-data-end"
  grep -o '"uuid": *"[^"]*"' /mnt/openstack/latest/meta_data.json
else
  echo "no config-2 volume on /dev/vda"
fi
echo "${GUEST_MARKER}-DONE"
while :; do sleep 3600; done
`;

async function tinyInitramfs(work: string, cacheDir: string): Promise<{ vmlinuz: string; initrd: Uint8Array }> {
  const kernelPackage = await resolveKernelPackage('linux-image-amd64', cacheDir);
  await extractDeb(await fetchDeb(cacheDir, kernelPackage), path.join(work, 'kernel'));
  await extractDeb(await fetchDeb(cacheDir, 'busybox-static'), path.join(work, 'busybox'));
  const version = (await readdir(path.join(work, 'kernel/lib/modules')))[0]!;
  const moduleRoot = path.join(work, 'kernel/lib/modules', version);
  const { order, files, contents } = await selectModules(moduleRoot, ['virtio_pci', 'virtio_blk', 'loop', 'isofs']);
  const entries: CpioEntry[] = [
    { kind: 'dir', path: 'bin', mode: 0o755 },
    { kind: 'dir', path: 'sbin', mode: 0o755 },
    { kind: 'dir', path: 'usr', mode: 0o755 },
    { kind: 'dir', path: 'usr/bin', mode: 0o755 },
    { kind: 'dir', path: 'usr/sbin', mode: 0o755 },
    { kind: 'dir', path: 'dev', mode: 0o755 },
    { kind: 'dir', path: 'etc', mode: 0o755 },
    { kind: 'chardev', path: 'dev/console', mode: 0o600, major: 5, minor: 1 },
    { kind: 'file', path: 'bin/busybox', mode: 0o755, data: await readFile(path.join(work, 'busybox/bin/busybox')) },
    { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
    { kind: 'file', path: 'init', mode: 0o755, data: Buffer.from(INIT) },
    { kind: 'file', path: 'etc/modules', mode: 0o644, data: Buffer.from(order.map((n) => `${files.get(n)!}\n`).join('')) },
  ];
  const dirs = new Set<string>();
  for (const name of order) {
    const rel = `lib/modules/${version}/${files.get(name)!}`;
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
    entries.push({ kind: 'file', path: rel, mode: 0o644, data: contents.get(name)! });
  }
  for (const d of dirs) entries.push({ kind: 'dir', path: d, mode: 0o755 });
  return { vmlinuz: path.join(work, 'kernel/boot', `vmlinuz-${version}`), initrd: gzipSync(cpioArchive(entries, 0)) };
}

/** One MBR partition entry (LBA only; CHS fields say "beyond 1024 cylinders"). */
function mbr(bootCode: Uint8Array, startSector: number, sectors: number, type: number): Buffer {
  const sector = Buffer.alloc(512);
  sector.set(bootCode.subarray(0, 440), 0);
  const entry = Buffer.from([0x80, 0xfe, 0xff, 0xff, type, 0xfe, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
  entry.writeUInt32LE(startSector, 8);
  entry.writeUInt32LE(sectors, 12);
  entry.copy(sector, 446);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/** Builds the image in `dir` and returns the qcow2 file and its raw size. */
export async function buildGuestImage(dir: string, cacheDir: string, diskMib = 64): Promise<{ qcow2: string; rawBytes: number }> {
  for (const [tool, pkg] of [
    ['syslinux', 'syslinux'],
    ['mformat', 'mtools'],
    ['mcopy', 'mtools'],
    ['qemu-img', 'qemu-utils'],
  ] as const)
    requireBinary(tool, pkg);
  const mbrBin = '/usr/lib/syslinux/mbr/mbr.bin';
  const bootCode = await readFile(mbrBin).catch(() => {
    throw new Error(`${mbrBin} is missing: apt-get install syslinux-common (scripts/setup.sh installs it)`);
  });
  const work = path.join(dir, 'guest-work');
  await mkdir(work, { recursive: true });
  try {
    const { vmlinuz, initrd } = await tinyInitramfs(work, cacheDir);
    const part = path.join(work, 'part.img');
    const partBytes = (diskMib - 1) * MIB;
    await writeFile(part, Buffer.alloc(0));
    await run('truncate', ['-s', String(partBytes), part]);
    // FAT32, with the partition's start as its hidden sectors so SYSLINUX's boot sector finds itself.
    await run('mformat', ['-i', part, '-F', '-H', '2048', '-N', '0badcafe', '-v', 'GUESTBOOT', '::']);
    await run('syslinux', ['--install', part]);
    await copyFile(vmlinuz, path.join(work, 'vmlinuz'));
    await writeFile(path.join(work, 'initrd'), initrd);
    await writeFile(
      path.join(work, 'syslinux.cfg'),
      'SERIAL 0 115200\nDEFAULT guest\nPROMPT 0\nTIMEOUT 0\nLABEL guest\n  KERNEL /vmlinuz\n  INITRD /initrd\n  APPEND console=ttyS0 quiet\n',
    );
    await run('mcopy', ['-i', part, path.join(work, 'vmlinuz'), path.join(work, 'initrd'), path.join(work, 'syslinux.cfg'), '::']);
    const raw = path.join(dir, 'guest.raw');
    await writeFile(raw, Buffer.concat([mbr(bootCode, 2048, partBytes / 512, 0x0c), Buffer.alloc(MIB - 512)]));
    await writeFile(raw, await readFile(part), { flag: 'a' });
    const qcow2 = path.join(dir, 'guest.qcow2');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    await rm(raw);
    return { qcow2, rawBytes: diskMib * MIB };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
