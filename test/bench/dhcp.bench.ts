/**
 * DHCP exchange rate with perfdhcp in relay mode (PEERS.md): a client
 * namespace (10.98.0.2/16, the "relay") and a server namespace (10.98.0.1/16)
 * on one bridge; perfdhcp unicasts DORA exchanges with giaddr set, at rising
 * rates, against each server in turn, in the same run:
 * - ours, full mode with discovery on, with leases in MySQL (the conductor's
 *   MysqlBootBackend on the local MariaDB, reached over its Unix socket from
 *   the namespace): every ACK is committed there before it is sent;
 * - ours again over the in-memory backend, to show the protocol layer alone;
 * - ISC Kea with its memfile lease backend, multi-threading on;
 * - ISC Kea with MySQL leases on the local MariaDB, when it can be set up;
 * - dnsmasq with --no-ping.
 * Reports per rate the achieved 4-way exchanges/s and the drop ratio, the
 * best rate with at most 1 % drops, and ours/Kea. Also a "PXE storm": 1,000
 * PXE clients (vendor class PXEClient, arch 0) at once, time until all ACKed.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { createLan, nsExec, nsSpawn, stopChild, waitForLine, type Lan, type Leaf } from '../boot/netns.ts';
import { requirePeer } from '../boot/peers.ts';
import { goal, type BenchContext, type BenchReport } from './harness.ts';
import { ladder, parsePerfdhcp } from './dhcp-perfdhcp.ts';
import { dropKeaDatabase, keaConfig, keaMysqlReady, startKea, startOurs, type BenchSubnet } from './dhcp-servers.ts';

const SUBNET: BenchSubnet = { server: '10.98.0.1', cidr: '10.98.0.0/16', netmask: '255.255.0.0', start: '10.98.1.0', end: '10.98.255.254' };
const RANGE = { start: SUBNET.start, end: SUBNET.end };

async function storm(cli: Leaf): Promise<{ ms: number; acked: number }> {
  const bin = requirePeer('/usr/sbin/perfdhcp');
  const vendor = Buffer.from('PXEClient:Arch:00000:UNDI:002001').toString('hex');
  const t0 = performance.now();
  const { stdout } = await nsExec(
    cli.ns,
    bin,
    ['-4', '-r', '100000', '-R', '1000', '-n', '1000', '-o', `60,${vendor}`, '-o', '93,0000', '-W', '2000000', '10.98.0.1'],
    60_000,
  ).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  const ms = performance.now() - t0;
  return { ms: Math.round(ms), acked: parsePerfdhcp(stdout).recvAck };
}

export default async function dhcpBench(ctx: BenchContext): Promise<BenchReport> {
  requirePeer('/usr/sbin/perfdhcp');
  requirePeer('/usr/sbin/kea-dhcp4');
  const dnsmasq = requirePeer('/usr/sbin/dnsmasq');
  const seconds = Math.max(2, Math.round(6 * ctx.scale));
  // Fine steps where lease stores that fsync every commit saturate.
  const rates = [50, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 16000];
  // BENCH_DHCP_ONLY=ours-mysql,kea-mysql runs a subset (ratios need both sides).
  const only = (process.env.BENCH_DHCP_ONLY ?? '').split(',').filter((n) => n.length > 0);
  const dir = await mkdtemp(path.join(tmpdir(), 'bm-dhcp-bench-'));
  let lan: Lan | null = null;
  let server: ChildProcess | null = null;
  const results: Record<string, unknown> = { secondsPerStep: seconds };
  const oursDb = `bm_dhcpbench_${process.pid}`;
  let oursDbCreated = false;
  const keaDb = `bm_kea_${process.pid}`;
  let keaDbCreated = false;
  try {
    lan = await createLan();
    const srv = await lan.addLeaf('srv', '10.98.0.1/16');
    const cli = await lan.addLeaf('cli', '10.98.0.2/16');
    const servers: { name: string; start: () => Promise<ChildProcess> }[] = [
      {
        name: 'ours-mysql',
        start: async () => {
          await syncDatabase(`mysql://root@127.0.0.1:3306/${oursDb}`);
          oursDbCreated = true;
          return startOurs(srv.ns, SUBNET, oursDb);
        },
      },
      {
        name: 'ours-memory',
        start: () => startOurs(srv.ns, SUBNET, null),
      },
      {
        name: 'kea-memfile',
        start: async () => {
          return startKea(
            srv.ns,
            dir,
            path.join(dir, 'kea-memfile.json'),
            keaConfig(SUBNET, { type: 'memfile', persist: false, 'lfc-interval': 0 }),
          );
        },
      },
      {
        name: 'kea-mysql',
        start: async () => {
          const why = await keaMysqlReady(keaDb);
          if (why) throw new Error(`Kea MySQL lease backend not set up: ${why}`);
          keaDbCreated = true;
          return startKea(
            srv.ns,
            dir,
            path.join(dir, 'kea-mysql.json'),
            keaConfig(SUBNET, { type: 'mysql', name: keaDb, host: 'localhost', user: 'root', password: '' }),
          );
        },
      },
      {
        name: 'dnsmasq',
        start: async () => {
          const child = nsSpawn(srv.ns, dnsmasq, [
            '--no-daemon',
            '--conf-file=/dev/null',
            '--port=0',
            '--no-ping',
            `--dhcp-range=${RANGE.start},${RANGE.end},255.255.0.0,1h`,
            '--dhcp-authoritative',
            '--dhcp-lease-max=100000',
            `--dhcp-leasefile=${path.join(dir, 'dnsmasq.leases')}`,
            `--pid-file=${path.join(dir, 'dnsmasq.pid')}`,
            '--log-facility=-',
          ]);
          await waitForLine(child, /DHCP, IP range/);
          return child;
        },
      },
    ];
    const best: Record<string, number | null> = {};
    for (const s of servers) {
      if (only.length > 0 && !only.includes(s.name)) continue;
      try {
        server = await s.start();
      } catch (err) {
        results[s.name] = { error: err instanceof Error ? err.message : String(err) };
        best[s.name] = null;
        ctx.log(`${s.name}: ${String(err)}`);
        continue;
      }
      const l = await ladder(ctx, s.name, cli, rates, seconds);
      const entry: Record<string, unknown> = {
        bestExchangesPerSecAtMax1PctDrops: l.best,
        dropRatioAtBest: l.bestDrop,
        peakExchangesPerSec: l.peak,
        steps: l.steps,
      };
      if (s.name !== 'dnsmasq') {
        const st = await storm(cli);
        entry.pxeStorm1000 = st;
        ctx.log(`${s.name} PXE storm: ${st.acked}/1000 ACKed in ${st.ms} ms`);
      }
      results[s.name] = entry;
      best[s.name] = l.best;
      await stopChild(server);
      server = null;
    }
    const ratio = (ours: string, peer: string): number | null => (best[ours] && best[peer] ? best[ours]! / best[peer]! : null);
    results.ratios = {
      oursMysqlVsKeaMysql: ratio('ours-mysql', 'kea-mysql'),
      oursMemoryVsKeaMemfile: ratio('ours-memory', 'kea-memfile'),
      oursMysqlVsDnsmasq: ratio('ours-mysql', 'dnsmasq'),
    };
    return {
      results,
      goals: [
        goal('ours with MySQL leases vs Kea with MySQL leases, exchanges/s at <=1% drops', ratio('ours-mysql', 'kea-mysql'), '>=', 1.0),
        goal('ours in-memory vs Kea memfile, exchanges/s at <=1% drops', ratio('ours-memory', 'kea-memfile'), '>=', 1.0),
      ],
    };
  } finally {
    await stopChild(server);
    await lan?.destroy();
    if (oursDbCreated) await dropDatabase(`mysql://root@127.0.0.1:3306/${oursDb}`).catch(() => undefined);
    if (keaDbCreated) await dropKeaDatabase(keaDb);
    await rm(dir, { recursive: true, force: true });
  }
}
