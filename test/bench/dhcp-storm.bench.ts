/**
 * The rack boot storm (issue 15): 1,000 PXE clients behind one relay power
 * on at once and behave as PXE ROMs do (test/boot/storm-client.ts: DISCOVER
 * retransmitted after 4, 8, 16, 32 s, REQUEST for the first offer, back to
 * DISCOVER on a NAK). Measured: the time until every client holds a lease,
 * and how many never got one, for ours with leases in MySQL and for ISC Kea
 * with leases in MySQL (multi-threaded), in the same run on one bridge. The
 * storm client runs in its own namespace as the relay (10.98.0.2, port 67).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { createLan, nsExec, stopChild, type Lan, type Leaf } from '../boot/netns.ts';
import { requirePeer } from '../boot/peers.ts';
import type { StormResult } from '../boot/storm-client.ts';
import { dropKeaDatabase, keaConfig, keaMysqlReady, startKea, startOurs, type BenchSubnet } from './dhcp-servers.ts';
import { goal, type BenchContext, type BenchReport } from './harness.ts';

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const SUBNET: BenchSubnet = { server: '10.98.0.1', cidr: '10.98.0.0/16', netmask: '255.255.0.0', start: '10.98.1.0', end: '10.98.255.254' };

type StormSummary = Omit<StormResult, 'leases'> & { readonly leaseCount: number };

async function storm(cli: Leaf, clients: number, deadlineMs: number, macPrefix: string): Promise<StormSummary> {
  const options = {
    servers: [{ address: SUBNET.server, port: 67 }],
    relay: { address: cli.address!, port: 67 },
    clients,
    macPrefix,
    deadlineMs,
  };
  const { stdout } = await nsExec(
    cli.ns,
    process.execPath,
    [path.join(repo, 'test/boot/storm-runner.ts'), JSON.stringify(options)],
    deadlineMs + 30_000,
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as StormSummary;
}

export default async function dhcpStormBench(ctx: BenchContext): Promise<BenchReport> {
  requirePeer('/usr/sbin/kea-dhcp4');
  const clients = Math.max(10, Math.round(1000 * ctx.scale));
  // Kea with MySQL leases is slow to lease a storm's worth here (docs/performance-notes.md): give both room to finish.
  const deadlineMs = 120_000;
  const dir = await mkdtemp(path.join(tmpdir(), 'bm-dhcp-storm-'));
  const oursDb = `bm_stormbench_${process.pid}`;
  const keaDb = `bm_stormkea_${process.pid}`;
  let oursDbCreated = false;
  let keaDbCreated = false;
  let lan: Lan | null = null;
  let server: ChildProcess | null = null;
  const results: Record<string, unknown> = { clients, deadlineMs };
  try {
    lan = await createLan();
    const srv = await lan.addLeaf('srv', `${SUBNET.server}/16`);
    const cli = await lan.addLeaf('cli', '10.98.0.2/16');

    await syncDatabase(`mysql://root@127.0.0.1:3306/${oursDb}`);
    oursDbCreated = true;
    server = await startOurs(srv.ns, SUBNET, oursDb);
    const ours = await storm(cli, clients, deadlineMs, '52:54:00:a1');
    ctx.log(
      `ours (MySQL leases): ${ours.leased}/${clients} leased, all by ${ours.allLeasedMs} ms, p50 ${ours.p50Ms} ms, NAKs ${ours.naks}`,
    );
    results['ours-mysql'] = ours;
    await stopChild(server);
    server = null;

    let kea: StormSummary | null = null;
    const why = await keaMysqlReady(keaDb);
    if (why === null) {
      keaDbCreated = true;
      server = await startKea(
        srv.ns,
        dir,
        path.join(dir, 'kea.json'),
        keaConfig(SUBNET, { type: 'mysql', name: keaDb, host: 'localhost', user: 'root', password: '' }),
      );
      kea = await storm(cli, clients, deadlineMs, '52:54:00:a2');
      ctx.log(`Kea (MySQL leases): ${kea.leased}/${clients} leased, all by ${kea.allLeasedMs} ms, p50 ${kea.p50Ms} ms, NAKs ${kea.naks}`);
      results['kea-mysql'] = kea;
      await stopChild(server);
      server = null;
    } else results['kea-mysql'] = { error: `Kea MySQL lease backend not set up: ${why}` };

    // A peer that never leased everyone took at least the deadline: the ratio is then an upper bound.
    const keaTime = kea === null ? null : (kea.allLeasedMs ?? deadlineMs);
    const ratio = ours.allLeasedMs !== null && keaTime !== null ? ours.allLeasedMs / keaTime : null;
    results.ratioOursVsKeaTime = ratio;
    return {
      results,
      goals: [
        goal('storm: every client leased by ours (leased / clients)', ours.leased / clients, '>=', 1),
        goal(
          'storm: ours time-to-all-leased vs Kea with MySQL leases',
          ratio,
          '<=',
          1,
          ours.allLeasedMs === null
            ? 'ours left clients without a lease'
            : kea?.allLeasedMs === null
              ? `Kea leased ${kea.leased}/${clients} by the ${deadlineMs} ms deadline: its time is taken as the deadline`
              : undefined,
        ),
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
