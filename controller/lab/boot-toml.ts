/**
 * Network boot on loopback, as the lab and the tests run it: HTTP and TFTP
 * boot on 127.0.0.1, DHCP off (loopback has no broadcast segment; the
 * machines start at the iPXE step), and placeholder deploy kernel and
 * ramdisk files (the lab's machines run the agent as a process).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface LoopbackBoot {
  readonly dir: string;
  readonly httpPort: number;
  readonly tftpPort: number;
}

/** The `[boot]` section, after making its http_root (with deploy/vmlinuz and deploy/initrd) and tftp_root under `dir`. */
export async function loopbackBootToml(o: LoopbackBoot): Promise<string> {
  await mkdir(path.join(o.dir, 'http/deploy'), { recursive: true });
  await mkdir(path.join(o.dir, 'tftp'), { recursive: true });
  await writeFile(path.join(o.dir, 'http/deploy/vmlinuz'), 'lab deploy kernel\n');
  await writeFile(path.join(o.dir, 'http/deploy/initrd'), 'lab deploy ramdisk\n');
  return [
    '[boot]',
    'server_address = "127.0.0.1"',
    'bind_address = "127.0.0.1"',
    'mode = "off"',
    `tftp_port = ${o.tftpPort}`,
    `http_port = ${o.httpPort}`,
    `tftp_root = "${path.join(o.dir, 'tftp')}"`,
    `http_root = "${path.join(o.dir, 'http')}"`,
  ].join('\n');
}
