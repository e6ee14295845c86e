/**
 * One full power-sync sweep over 10,000 virtual BMCs (BENCH_SCALE shrinks
 * it) with the native driver: sweep time and the controller side's peak RSS.
 * The BMCs run in a child process so the RSS is the controller's alone. Two
 * stores: in memory (the BMC side of the loop alone), and the controller's
 * own MysqlPowerSyncStore over 10,000 node rows in MariaDB (decrypting each
 * password, writing each state), which is the sweep that is judged.
 * The cold sweep (a session opened to every BMC) is the one judged, since
 * sessions idle longer than the pool's idle time are closed between sweeps at
 * the default 60 s interval. The peer is the same loop with the ipmitool
 * driver over a sample of the fleet, extrapolated to the full count.
 */
import { fork, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { PowerState } from '../../controller/drivers/power/types.ts';
import { PowerSync, type PowerSyncStore, type SyncCandidate } from '../../controller/conductor/power-sync.ts';
import type { EventBus, EventSubscription } from '../../controller/events/bus.ts';
import { IpmiDriver } from '../../controller/drivers/power/ipmi/driver.ts';
import { SessionPool } from '../../controller/drivers/power/ipmi/pool.ts';
import { IpmitoolDriver } from '../../controller/drivers/power/ipmitool/driver.ts';
import { requireBinary } from '../support/ipmi-sim.ts';
import { randomBytes, randomUUID } from 'node:crypto';
import { openDatabase } from '../../db/connect.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { MysqlPowerSyncStore } from '../../controller/conductor/power-sync-store.ts';
import { SecretBox } from '../../controller/secrets/secret-box.ts';
import { uniqueDatabaseUrl } from '../../controller/lab/index.ts';
import { goal, peakRssMiB, type BenchContext, type BenchReport } from './harness.ts';

const CONCURRENCY = 64;
const PREFIX = 'bench-fleet-pw-';

class MemoryStore implements PowerSyncStore {
  readonly nodes: SyncCandidate[];
  readonly #index = new Map<string, number>();
  constructor(nodes: SyncCandidate[]) {
    this.nodes = nodes;
    for (const [i, n] of nodes.entries()) this.#index.set(n.uuid, i);
  }
  async candidates(): Promise<SyncCandidate[]> {
    return [...this.nodes];
  }
  async recordPower(uuid: string, state: PowerState): Promise<void> {
    const i = this.#index.get(uuid)!;
    this.nodes[i] = { ...this.nodes[i]!, powerState: state };
  }
  async recordFailures(uuid: string, failures: number): Promise<void> {
    const i = this.#index.get(uuid)!;
    this.nodes[i] = { ...this.nodes[i]!, failures };
  }
}

/** Counts events; the bench does not need NATS. */
class CountingBus implements EventBus {
  published = 0;
  publish(): void {
    this.published++;
  }
  subscribe(): EventSubscription {
    throw new Error('not used');
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

interface FleetChild {
  readonly child: ChildProcess;
  readonly ports: number[];
  stats(): Promise<{ received: number; sessions: number; dropped: number; rssMiB: number }>;
}

async function startFleetProcess(count: number): Promise<FleetChild> {
  const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../controller/lab/vbmc/fleet-process.ts');
  const child = fork(script, [String(count), PREFIX], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const ports = await new Promise<number[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the BMC fleet did not start within 120 s')), 120_000);
    child.once('exit', (code) => reject(new Error(`the BMC fleet exited with ${code}`)));
    child.once('message', (m: { type: string; ports: number[] }) => {
      clearTimeout(timer);
      resolve(m.ports);
    });
  });
  return {
    child,
    ports,
    stats: () =>
      new Promise((resolve) => {
        child.once('message', (m: { received: number; sessions: number; dropped: number; rssMiB: number }) => resolve(m));
        child.send({ type: 'stats' });
      }),
  };
}

function candidates(ports: readonly number[], driver: string, count: number): SyncCandidate[] {
  return ports.slice(0, count).map((port, i) => ({
    uuid: `bench-node-${i}`,
    provisionState: 'available',
    powerState: 'unknown',
    maintenance: false,
    failures: 0,
    target: { nodeUuid: `bench-node-${i}`, driver, address: '127.0.0.1', port, username: 'admin', password: `${PREFIX}${i}` },
  }));
}

/** A cold sweep through the controller's MySQL store: node rows with sealed passwords, as enrollment writes them. */
async function mysqlSweep(
  ctx: BenchContext,
  ports: readonly number[],
  count: number,
  options: ConstructorParameters<typeof PowerSync>[3],
): Promise<{ seconds: number; correct: number; failed: number }> {
  const url = uniqueDatabaseUrl('bm_psbench');
  await syncDatabase(url);
  const handle = await openDatabase(url, { connectionLimit: 16 });
  const pool = new SessionPool();
  try {
    const secrets = new SecretBox(randomBytes(32));
    const uuids: string[] = [];
    for (let start = 0; start < count; start += 1000) {
      const rows: unknown[][] = [];
      for (let i = start; i < Math.min(count, start + 1000); i++) {
        const uuid = randomUUID();
        uuids.push(uuid);
        rows.push([
          uuid,
          'default',
          1,
          1024,
          10,
          'x86_64',
          '127.0.0.1',
          ports[i],
          'admin',
          secrets.encrypt(`${PREFIX}${i}`, uuid),
          'available',
          '{}',
        ]);
      }
      await handle.pool.query(
        'INSERT INTO nodes (uuid, group_name, cpus, memory_mb, local_gb, cpu_arch, pm_address, pm_port, pm_user, pm_password_enc, provision_state, properties) VALUES ?',
        [rows],
      );
    }
    const sync = new PowerSync(
      new MysqlPowerSyncStore(handle.db, secrets, ['default']),
      (t) => new IpmiDriver(t, { pool }),
      new CountingBus(),
      options,
      new Registry(),
      pino({ level: 'silent' }),
    );
    ctx.log(`MySQL store: cold sweep over ${count} node rows`);
    const sweep = await sync.sweep();
    const [states] = await handle.pool.query<import('mysql2/promise').RowDataPacket[]>('SELECT uuid, power_state FROM nodes');
    const byUuid = new Map(states.map((r) => [r.uuid as string, r.power_state as string]));
    let correct = 0;
    for (const [i, uuid] of uuids.entries()) if (byUuid.get(uuid) === (i % 2 === 0 ? 'on' : 'off')) correct++;
    ctx.log(`MySQL store: ${sweep.durationMs} ms, ${correct} states recorded correctly`);
    return { seconds: sweep.durationMs / 1000, correct, failed: sweep.failed };
  } finally {
    await pool.close();
    await handle.close();
    await dropDatabase(url).catch(() => undefined);
  }
}

export default async function powerSync(ctx: BenchContext): Promise<BenchReport> {
  const count = Math.max(100, Math.round(10_000 * ctx.scale));
  const unreachable = Math.round(count * 0.005);
  ctx.log(`starting ${count} virtual BMCs in a child process (${unreachable} will not answer)`);
  const fleet = await startFleetProcess(count);
  const log = pino({ level: 'silent' });
  const options = { intervalMs: 60_000, concurrency: CONCURRENCY, enforce: false, failureThreshold: 3, callTimeoutMs: 10_000 };
  const pool = new SessionPool();
  try {
    for (let i = count - unreachable; i < count; i++) fleet.child.send({ type: 'silent', index: i });
    const store = new MemoryStore(candidates(fleet.ports, 'ipmi', count));
    const bus = new CountingBus();
    const sync = new PowerSync(store, (t) => new IpmiDriver(t, { pool }), bus, options, new Registry(), log);
    const rssBefore = peakRssMiB();
    ctx.log('cold sweep (a session opened to every BMC)');
    const cold = await sync.sweep();
    ctx.log(`cold sweep: ${cold.durationMs} ms, ${cold.changed} recorded, ${cold.failed} failed`);
    const warm = await sync.sweep();
    ctx.log(`warm sweep (sessions reused): ${warm.durationMs} ms`);
    let correct = 0;
    for (const [i, n] of store.nodes.entries()) if (i < count - unreachable && n.powerState === (i % 2 === 0 ? 'on' : 'off')) correct++;
    const fleetStats = await fleet.stats();
    const controllerRss = peakRssMiB();
    const viaMysql = await mysqlSweep(ctx, fleet.ports, count, options);
    const controllerRssWithMysql = peakRssMiB();

    requireBinary('ipmitool', 'ipmitool');
    const sample = Math.min(200, count - unreachable);
    const peerStore = new MemoryStore(candidates(fleet.ports, 'ipmitool', sample));
    const peer = new PowerSync(
      peerStore,
      (t) => new IpmitoolDriver(t, { cipherSuite: 17 }),
      new CountingBus(),
      options,
      new Registry(),
      log,
    );
    ctx.log(`peer: ipmitool driver over ${sample} BMCs`);
    const peerSweep = await peer.sweep();
    const peerExtrapolatedS = (peerSweep.durationMs / 1000) * (count / sample);
    const coldS = cold.durationMs / 1000;
    return {
      results: {
        bmcs: count,
        // Other work on this machine skews the figures: the 1-minute load average when the run ended.
        loadAverage1m: Math.round(os.loadavg()[0]! * 100) / 100,
        unreachable,
        concurrency: CONCURRENCY,
        coldSweepS: coldS,
        warmSweepS: warm.durationMs / 1000,
        readsPerSecondCold: Math.round(count / coldS),
        statesRecordedCorrectly: correct,
        failedReads: cold.failed,
        sessionsOpenedByFleet: fleetStats.sessions,
        datagramsDroppedByFleet: fleetStats.dropped,
        controllerPeakRssMiB: controllerRss,
        mysqlStoreColdSweepS: viaMysql.seconds,
        mysqlStoreStatesRecordedCorrectly: viaMysql.correct,
        controllerPeakRssWithMysqlSweepMiB: controllerRssWithMysql,
        controllerRssBeforeSweepMiB: rssBefore,
        fleetProcessRssMiB: fleetStats.rssMiB,
        ipmitoolSampleBmcs: sample,
        ipmitoolSampleSweepS: peerSweep.durationMs / 1000,
        ipmitoolExtrapolatedSweepS: Math.round(peerExtrapolatedS * 10) / 10,
        speedupVsIpmitool: Math.round((peerExtrapolatedS / coldS) * 10) / 10,
      },
      goals: [
        goal(
          `full sweep over ${count} BMCs through the MySQL store, seconds`,
          viaMysql.correct === count - unreachable ? viaMysql.seconds : null,
          '<=',
          60,
          viaMysql.correct === count - unreachable
            ? undefined
            : `only ${viaMysql.correct} of ${count - unreachable} states recorded correctly`,
        ),
        goal(
          `full sweep over ${count} BMCs, in-memory store, seconds`,
          correct === count - unreachable ? coldS : null,
          '<=',
          60,
          correct === count - unreachable ? undefined : `only ${correct} of ${count - unreachable} states recorded correctly`,
        ),
      ],
    };
  } finally {
    await pool.close();
    if (fleet.child.exitCode === null) {
      const exited = new Promise((r) => fleet.child.once('exit', r));
      fleet.child.disconnect();
      const timer = setTimeout(() => fleet.child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
  }
}
