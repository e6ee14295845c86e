/**
 * DHCP full mode against busybox udhcpc (and ISC dhclient) across a veth
 * pair: our server runs in its own namespace with its leases in MySQL (the
 * conductor's MysqlBootBackend, reached over MariaDB's Unix socket since the
 * namespace has its own loopback); the enrolled ports are rows in `ports`.
 */
import { mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunnerConfig } from './boot-runner.ts';
import { startRunner, udhcpc, type Runner } from './dhcp-peers.ts';
import { createLan, ip, nsExec, nsSpawn, stopChild, type Lan, type Leaf } from './netns.ts';
import { requirePeer } from './peers.ts';
import mysql from 'mysql2/promise';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { uniqueDatabaseUrl } from '../../controller/lab/index.ts';

const KNOWN = '52:54:00:aa:00:01';
const FIXED = '52:54:00:aa:00:02';
const UNKNOWN = '52:54:00:bb:00:99';

let lan: Lan;
let client: Leaf;
let srvNs: string;
let runner: Runner | null = null;
const databaseUrl = uniqueDatabaseUrl('bm_dhcp');
const database = new URL(databaseUrl).pathname.slice(1);
let socketPath = '';

async function enrollPorts(): Promise<void> {
  const conn = await mysql.createConnection({ uri: databaseUrl });
  try {
    const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT @@socket AS socket');
    socketPath = rows[0]!.socket as string;
    for (const [uuid, mac, fixed] of [
      ['11111111-1111-4111-8111-111111111111', KNOWN, null],
      ['22222222-2222-4222-8222-222222222222', FIXED, '10.96.0.42'],
    ] as const) {
      await conn.query(
        "INSERT INTO nodes (uuid, cpus, memory_mb, local_gb, cpu_arch, pm_address, pm_user, properties) VALUES (?, 1, 1024, 10, 'x86_64', '192.0.2.1', 'admin', '{}')",
        [uuid],
      );
      await conn.query('INSERT INTO ports (uuid, node_uuid, address, fixed_ip) VALUES (UUID(), ?, ?, ?)', [uuid, mac, fixed]);
    }
  } finally {
    await conn.end();
  }
}

function serverConfig(discovery: boolean): RunnerConfig {
  return {
    dhcp: {
      mode: 'full',
      serverAddress: '10.96.0.1',
      range: { start: '10.96.0.100', end: '10.96.0.199', netmask: '255.255.255.0', router: '10.96.0.1', dns: ['10.96.0.1'] },
      discovery,
      mysql: { socketPath, user: 'root', database },
    },
  };
}

async function setMac(mac: string): Promise<void> {
  await ip('-n', client.ns, 'link', 'set', 'eth0', 'down');
  await ip('-n', client.ns, 'link', 'set', 'eth0', 'address', mac);
  await ip('-n', client.ns, 'link', 'set', 'eth0', 'up');
}

beforeAll(async () => {
  requirePeer('/usr/sbin/udhcpc');
  await syncDatabase(databaseUrl);
  await enrollPorts();
  lan = await createLan();
  srvNs = (await lan.addLeaf('srv', '10.96.0.1/24')).ns;
  client = await lan.addLeaf('cli', null, KNOWN);
  runner = await startRunner(srvNs, serverConfig(false));
});

afterAll(async () => {
  await stopChild(runner?.child);
  await lan?.destroy();
  await dropDatabase(databaseUrl).catch(() => undefined);
});

describe('DHCP full mode with udhcpc across a veth pair', () => {
  it('leases an address from the range to an enrolled MAC and records the lease', async () => {
    await setMac(KNOWN);
    const r = await udhcpc(client.ns, []);
    expect(r.ok, r.output).toBe(true);
    const leased = r.bound!.ip!;
    expect(leased).toMatch(/^10\.96\.0\.1\d\d$/);
    expect(r.bound!.serverid).toBe('10.96.0.1');
    expect(r.bound!.subnet).toBe('255.255.255.0');
    expect(r.bound!.router).toBe('10.96.0.1');
    expect(r.bound!.lease).toBe('3600');
    // A plain client (no PXE class) gets no boot file.
    expect(r.bound!.boot_file ?? '').toBe('');
    const stats = await runner!.stats();
    expect(stats.dhcp!.leaseList).toContainEqual(expect.objectContaining({ mac: KNOWN, ip: leased }));
    // The same MAC asking again keeps its address.
    const again = await udhcpc(client.ns, []);
    expect(again.bound!.ip).toBe(leased);
  });

  it('ends the lease when udhcpc releases it (DHCPRELEASE)', async () => {
    await setMac(KNOWN);
    const before = (await runner!.stats()).dhcp!;
    // busybox 1.35 skips the release with -q, so udhcpc runs as a daemon in the
    // foreground, configures the address (the release is unicast from it) and
    // releases when stopped (-R).
    const dir = await mkdtemp(path.join(tmpdir(), 'bm-release-'));
    const script = path.join(dir, 'script.sh');
    await writeFile(
      script,
      `#!/bin/sh\ncase "$1" in bound) ip addr add "$ip/$mask" dev "$interface"; touch "${dir}/bound" ;; deconfig) ip addr flush dev "$interface" ;; esac\n`,
    );
    await chmod(script, 0o755);
    const child = nsSpawn(client.ns, requirePeer('/usr/sbin/udhcpc'), ['-i', 'eth0', '-f', '-R', '-t', '3', '-T', '1', '-s', script]);
    try {
      const deadline = Date.now() + 10_000;
      while (
        !(await readFile(path.join(dir, 'bound')).then(
          () => true,
          () => false,
        ))
      ) {
        if (Date.now() > deadline) throw new Error('udhcpc did not bind');
        await new Promise((r) => setTimeout(r, 100));
      }
      expect((await runner!.stats()).dhcp!.leaseList).toContainEqual(expect.objectContaining({ mac: KNOWN }));
      await stopChild(child);
      await new Promise((r) => setTimeout(r, 300));
      const after = (await runner!.stats()).dhcp!;
      expect(after.releases as number).toBe((before.releases as number) + 1);
      expect(after.leaseList).not.toContainEqual(expect.objectContaining({ mac: KNOWN }));
    } finally {
      await stopChild(child, 'SIGKILL');
      await ip('-n', client.ns, 'addr', 'flush', 'dev', 'eth0');
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('gives a port its fixed address', async () => {
    await setMac(FIXED);
    const r = await udhcpc(client.ns, []);
    expect(r.ok, r.output).toBe(true);
    expect(r.bound!.ip).toBe('10.96.0.42');
  });

  it('answers nothing to an unknown MAC while discovery is off', async () => {
    await setMac(UNKNOWN);
    const before = (await runner!.stats()).dhcp!.unknownMac as number;
    const r = await udhcpc(client.ns, [], 2);
    expect(r.ok).toBe(false);
    expect((await runner!.stats()).dhcp!.unknownMac as number).toBeGreaterThan(before);
  });

  it('names the boot file by client class: BIOS PXE, UEFI x86-64, iPXE', async () => {
    await setMac(KNOWN);
    const bios = await udhcpc(client.ns, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000']);
    expect(bios.bound!.boot_file).toBe('undionly.kpxe');
    expect(bios.bound!.siaddr).toBe('10.96.0.1');
    const efi = await udhcpc(client.ns, ['-V', 'PXEClient:Arch:00007:UNDI:003016', '-x', '0x5d:0007']);
    expect(efi.bound!.boot_file).toBe('ipxe.efi');
    const efiBc = await udhcpc(client.ns, ['-V', 'PXEClient:Arch:00009:UNDI:003016', '-x', '0x5d:0009']);
    expect(efiBc.bound!.boot_file).toBe('ipxe.efi');
    // iPXE sends user class "iPXE" (option 77) and gets its script over HTTP.
    const ipxe = await udhcpc(client.ns, ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x4d:69505845', '-O', 'bootfile']);
    expect(ipxe.bound!.boot_file).toBe(`http://10.96.0.1:6386/boot/${KNOWN}.ipxe`);
    expect(ipxe.bound!.bootfile).toBe(`http://10.96.0.1:6386/boot/${KNOWN}.ipxe`);
  });

  it('leases to ISC dhclient as well', async () => {
    const dhclient = requirePeer('/usr/sbin/dhclient');
    await setMac(KNOWN);
    const dir = await mkdtemp(path.join(tmpdir(), 'bm-dhclient-'));
    try {
      const script = path.join(dir, 'script.sh');
      await writeFile(script, `#!/bin/sh\nif [ "$reason" = BOUND ]; then env > "${dir}/bound"; fi\nexit 0\n`);
      await chmod(script, 0o755);
      await nsExec(
        client.ns,
        dhclient,
        ['-1', '-v', '-sf', script, '-lf', path.join(dir, 'leases'), '-pf', path.join(dir, 'pid'), 'eth0'],
        40_000,
      );
      const env = await readFile(path.join(dir, 'bound'), 'utf8');
      expect(env).toMatch(/new_ip_address=10\.96\.0\.1\d\d/);
      expect(env).toMatch(/new_dhcp_server_identifier=10\.96\.0\.1/);
      const pid = Number((await readFile(path.join(dir, 'pid'), 'utf8').catch(() => '0')).trim());
      if (pid > 0) process.kill(pid, 'SIGTERM');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  // It restarts the server, which can take over half a minute on a loaded host (startRunner).
  it('leases to an unknown MAC once discovery is on', { timeout: 90_000 }, async () => {
    await stopChild(runner?.child);
    runner = await startRunner(srvNs, serverConfig(true));
    await setMac(UNKNOWN);
    const r = await udhcpc(client.ns, ['-V', 'PXEClient:Arch:00000:UNDI:002001']);
    expect(r.ok, r.output).toBe(true);
    expect(r.bound!.ip).toMatch(/^10\.96\.0\.1\d\d$/);
    expect(r.bound!.boot_file).toBe('undionly.kpxe');
  });
});
