/**
 * No collapse under overload (issue 15): our DHCP server with leases in
 * MySQL, and Kea with MySQL leases as the peer, each found its best rate
 * (perfdhcp in relay mode, the highest achieved 4-way exchange rate with at
 * most 1 % drops on a ladder of offered rates), then offered twice that rate
 * for as long. Past capacity a server must keep serving at capacity and shed
 * the excess early; goal: at 2x offered, >= 0.9x the best rate.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { createLan, stopChild, type Lan, type Leaf } from '../boot/netns.ts';
import { requirePeer } from '../boot/peers.ts';
import { ladder, perfdhcp } from './dhcp-perfdhcp.ts';
import { dropKeaDatabase, keaConfig, keaMysqlReady, startKea, startOurs, type BenchSubnet } from './dhcp-servers.ts';
import { goal, type BenchContext, type BenchReport } from './harness.ts';

const SUBNET: BenchSubnet = { server: '10.98.0.1', cidr: '10.98.0.0/16', netmask: '255.255.0.0', start: '10.98.1.0', end: '10.98.255.254' };
const RATES = [100, 200, 300, 400, 500, 600, 750, 900, 1000, 1250, 1500, 2000, 2500, 3000, 4000];

interface Overload {
  readonly best: number;
  readonly atDouble: { readonly offered: number; readonly rate: number; readonly dropRatio: number } | null;
  readonly ratio: number | null;
  readonly steps: readonly unknown[];
}

async function overload(ctx: BenchContext, name: string, cli: Leaf, seconds: number): Promise<Overload> {
  const l = await ladder(ctx, name, cli, RATES, seconds);
  if (l.best === 0) return { best: 0, atDouble: null, ratio: null, steps: l.steps };
  const doubled = await perfdhcp(cli, 2 * l.best, seconds, 20000);
  ctx.log(`${name} offered 2x best (${2 * l.best}/s): ${doubled.rate} exchanges/s, drop ratio ${doubled.dropRatio}`);
  return {
    best: l.best,
    atDouble: { offered: doubled.offered, rate: doubled.rate, dropRatio: doubled.dropRatio },
    ratio: doubled.rate / l.best,
    steps: l.steps,
  };
}

export default async function dhcpOverloadBench(ctx: BenchContext): Promise<BenchReport> {
  requirePeer('/usr/sbin/perfdhcp');
  requirePeer('/usr/sbin/kea-dhcp4');
  const seconds = Math.max(3, Math.round(8 * ctx.scale));
  const dir = await mkdtemp(path.join(tmpdir(), 'bm-dhcp-overload-'));
  const oursDb = `bm_overload_${process.pid}`;
  const keaDb = `bm_overloadkea_${process.pid}`;
  let oursDbCreated = false;
  let keaDbCreated = false;
  let lan: Lan | null = null;
  let server: ChildProcess | null = null;
  const results: Record<string, unknown> = { secondsPerStep: seconds };
  try {
    lan = await createLan();
    const srv = await lan.addLeaf('srv', `${SUBNET.server}/16`);
    const cli = await lan.addLeaf('cli', '10.98.0.2/16');
    await syncDatabase(`mysql://root@127.0.0.1:3306/${oursDb}`);
    oursDbCreated = true;
    server = await startOurs(srv.ns, SUBNET, oursDb);
    const ours = await overload(ctx, 'ours-mysql', cli, seconds);
    results['ours-mysql'] = ours;
    await stopChild(server);
    server = null;
    const why = await keaMysqlReady(keaDb);
    if (why === null) {
      keaDbCreated = true;
      server = await startKea(
        srv.ns,
        dir,
        path.join(dir, 'kea.json'),
        keaConfig(SUBNET, { type: 'mysql', name: keaDb, host: 'localhost', user: 'root', password: '' }),
      );
      results['kea-mysql'] = await overload(ctx, 'kea-mysql', cli, seconds);
      await stopChild(server);
      server = null;
    } else results['kea-mysql'] = { error: `Kea MySQL lease backend not set up: ${why}` };
    return {
      results,
      goals: [
        goal(
          'overload: ours at 2x offered vs its best rate (MySQL leases)',
          ours.ratio,
          '>=',
          0.9,
          ours.best === 0 ? 'no rate with <= 1 % drops was found' : undefined,
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
