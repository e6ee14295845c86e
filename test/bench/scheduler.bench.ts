/**
 * The scheduler under a boot storm: 1,000 concurrent boots on 10,000 enrolled
 * nodes (BENCH_SCALE scales both) through two controller processes sharing
 * one database. The nodes use the fake power driver: the claim is what is
 * measured, not the deploys that follow. The peer is the database itself:
 * the same number of single-row conditional UPDATEs (the claim's own
 * statement shape, on a nodes table of the same size) from a pool as large as
 * both controllers' pools together, in the same run. Double bookings are
 * counted in SQL afterwards.
 *
 * claims_per_s is boot requests answered per second: each answer is a node
 * claimed and an instance BUILD, its deploy handed to the node's owner. The
 * deploys' starts (token, bootdev, power-on) are paced by each controller's
 * deploy_start_concurrency and may go on after the last answer:
 * deploys_waiting_for_agents_after_s is how much longer until every one has
 * powered its node, and the controllers' CPU and statements are also counted
 * until then, so work moved past the storm still shows.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { openDatabase, parseDatabaseUrl } from '../../db/connect.ts';
import { Scheduler } from '../../controller/scheduler/scheduler.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { uuidv7 } from '../../controller/nodes/uuid.ts';
import { FlavorService } from '../../proto/gen/bm/v1/flavor_pb.js';
import { InstanceService } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { runBmctl, startControllerProcess, uniqueDatabaseUrl, type ControllerProcess } from '../../controller/lab/index.ts';
import { cpuSecondsOf } from './bench-process.ts';
import { goal, type BenchContext, type BenchReport } from './harness.ts';

const FULL_NODES = 10_000;
const FULL_BOOTS = 1_000;
/** The controllers' database pool (config database.pool_size default); the peer gets both pools' worth. */
const POOL = 16;
const ENROLL_CONCURRENCY = 32;

/** A fleet of a few sizes: best fit has groups of equal nodes to spread concurrent boots over. */
function size(i: number): { cpus: number; memoryMb: number; localGb: number } {
  return { cpus: [8, 16, 32][i % 3]!, memoryMb: [16384, 32768, 65536][i % 3]!, localGb: [100, 200, 400][i % 3]! };
}

function mac(i: number): string {
  const h = i.toString(16).padStart(6, '0');
  return `52:54:02:${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}`;
}

/** Statement and row counters MariaDB keeps server-wide (other databases' traffic included: a noisy neighbour shows up here too). */
const STATUS_COUNTERS = [
  'Com_select',
  'Com_update',
  'Com_insert',
  'Com_delete',
  'Com_commit',
  'Com_begin',
  'Com_rollback',
  'Questions',
  'Handler_read_key',
  'Handler_read_next',
  'Handler_update',
  'Handler_write',
  'Innodb_log_writes',
] as const;

async function globalStatus(sql: mysql.Connection): Promise<Map<string, number>> {
  const [rows] = await sql.query<mysql.RowDataPacket[]>('SHOW GLOBAL STATUS WHERE Variable_name IN (?)', [[...STATUS_COUNTERS]]);
  return new Map(rows.map((r) => [String(r.Variable_name), Number(r.Value)]));
}

/** Per boot, so runs of different scales compare. */
function statusDelta(before: Map<string, number>, after: Map<string, number>, boots: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of STATUS_COUNTERS) out[name] = Math.round((((after.get(name) ?? 0) - (before.get(name) ?? 0)) / boots) * 10) / 10;
  return out;
}

/** Seconds until `count` nodes wait for their agents (null: not within a minute). */
async function waitForDeployStarts(sql: mysql.Connection, count: number): Promise<number | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < 60_000) {
    const [[row]] = await sql.query<mysql.RowDataPacket[]>("SELECT COUNT(*) AS n FROM nodes WHERE provision_state = 'wait-callback'");
    if (Number(row!.n) >= count) return (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 100));
  }
  return null;
}

/** The local MariaDB server's pid, if it runs on this host (the bench's database usually does). */
async function mariadbPid(): Promise<number | null> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const comm = await readFile(`/proc/${entry}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === 'mariadbd' || comm.trim() === 'mysqld') return Number(entry);
  }
  return null;
}

async function inPool(count: number, concurrency: number, work: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

/** The peer: `count` conditional single-row UPDATEs, all issued at once, through a pool of 2 × POOL connections. */
async function rawClaims(nodes: number, count: number): Promise<{ perSecond: number; claimed: number }> {
  const url = uniqueDatabaseUrl('bm_bench_rawclaim');
  await syncDatabase(url);
  const p = parseDatabaseUrl(url);
  const conns = mysql.createPool({ host: p.host, port: p.port, user: p.user, database: p.database, connectionLimit: 2 * POOL });
  try {
    const sealed = randomBytes(45);
    const uuids: string[] = [];
    for (let start = 0; start < nodes; start += 1000) {
      const rows = [];
      for (let i = start; i < Math.min(nodes, start + 1000); i++) {
        const uuid = uuidv7();
        uuids.push(uuid);
        const s = size(i);
        rows.push([
          uuid,
          `raw-${i}`,
          'default',
          s.cpus,
          s.memoryMb,
          s.localGb,
          'x86_64',
          'fake',
          623,
          'admin',
          sealed,
          'fake',
          '{}',
          'available',
        ]);
      }
      await conns.query(
        'INSERT INTO nodes (uuid, name, group_name, cpus, memory_mb, local_gb, cpu_arch, pm_address, pm_port, pm_user, pm_password_enc, power_driver, properties, provision_state) VALUES ?',
        [rows],
      );
    }
    // Warm the pool, as the controllers' pools are warm after enrollment.
    await Promise.all(Array.from({ length: 2 * POOL }, () => conns.query('SELECT 1')));
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        conns.query<mysql.ResultSetHeader>(
          "UPDATE nodes SET instance_uuid = ?, provision_state = 'deploying', reservation = 'raw', version = version + 1 WHERE uuid = ? AND provision_state = 'available' AND maintenance = 0 AND instance_uuid IS NULL AND reservation IS NULL",
          [uuidv7(), uuids[i * Math.floor(nodes / count)]!],
        ),
      ),
    );
    const seconds = (performance.now() - t0) / 1000;
    return { perSecond: count / seconds, claimed: results.filter(([r]) => r.affectedRows === 1).length };
  } finally {
    await conns.end();
    await dropDatabase(url);
  }
}

export default async function schedulerBench(ctx: BenchContext): Promise<BenchReport> {
  const nodeCount = Math.max(100, Math.round(FULL_NODES * ctx.scale));
  const boots = Math.max(10, Math.round(FULL_BOOTS * ctx.scale));
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bm-schedbench-'));
  let a: ControllerProcess | null = null;
  let b: ControllerProcess | null = null;
  const conns: RpcConnection[] = [];
  try {
    const env = { BM_SECRETS_KEY: randomBytes(32).toString('base64') };
    // Deploys start after each claim and wait for an agent that never comes: slow polling keeps them from crowding the claims out.
    const extraToml = ['[conductor]', 'callback_timeout_s = 3600', 'poll_ms = 2000', '[power]', 'sync_interval_s = 3600'].join('\n');
    a = await startControllerProcess({ env, extraToml, logLevel: 'warn' });
    // One cluster: the same database and NATS prefix (a boot's deploy runs at its node's owner, reached over NATS).
    b = await startControllerProcess({ env, extraToml, logLevel: 'warn', databaseUrl: a.databaseUrl, natsPrefix: a.natsPrefix });
    const apiA = connect(a.url, { metadata: { authorization: `Bearer ${a.token}` } });
    const apiB = connect(b.url, { metadata: { authorization: `Bearer ${b.token}` } });
    conns.push(apiA, apiB);

    ctx.log(`enrolling ${nodeCount} nodes through the API`);
    const t0 = performance.now();
    await inPool(nodeCount, ENROLL_CONCURRENCY, (i) =>
      (i % 2 === 0 ? apiA : apiB).client(NodeService).createNode({
        name: `sched-${i}`,
        pmAddress: `fake-${i}`,
        pmUser: 'admin',
        pmPassword: 'sched-secret',
        powerDriver: 'fake',
        cpuArch: 'x86_64',
        mac: mac(i),
        ...size(i),
      }),
    );
    const enrollS = (performance.now() - t0) / 1000;
    const p = parseDatabaseUrl(a.databaseUrl);
    const sql = await mysql.createConnection({ host: p.host, port: p.port, user: p.user, database: p.database });
    try {
      // Fixture: the nodes as cleaning would leave them (cleaning itself is tested with real agents elsewhere).
      await sql.query("UPDATE nodes SET provision_state = 'available'");
      const image = path.join(dir, 'tiny.raw');
      await writeFile(image, randomBytes(4096));
      await truncate(image, 1024 * 1024);
      const created = await runBmctl(['image', 'create', image, '--name', 'sched-image', '--disk-format', 'raw'], {
        BM_URL: a.url,
        BM_TOKEN: a.token,
      });
      if (created.code !== 0) throw new Error(`image create: ${created.stderr}`);
      const flavor = await apiA.client(FlavorService).createFlavor({ name: 'sched', ramMb: 4096, diskGb: 1, cpus: 2 });

      ctx.log(`${boots} concurrent boots through two controllers`);
      const cpuBefore = (await cpuSecondsOf(a.pid)) + (await cpuSecondsOf(b.pid));
      // Where else the storm's CPU goes: this process (the 1,000 clients) and the database server, when it runs here.
      const clientCpuBefore = process.cpuUsage();
      const mariadb = await mariadbPid();
      const mariadbCpuBefore = mariadb === null ? 0 : await cpuSecondsOf(mariadb);
      const statusBefore = await globalStatus(sql);
      const t1 = performance.now();
      const results = await Promise.allSettled(
        Array.from({ length: boots }, (_, i) =>
          (i % 2 === 0 ? apiA : apiB)
            .client(InstanceService)
            .createInstance({ name: `s-${i}`, flavor: 'sched', image: 'sched-image' }, { timeoutMs: 300_000 }),
        ),
      );
      const bootS = (performance.now() - t1) / 1000;
      const statusPerBoot = statusDelta(statusBefore, await globalStatus(sql), boots);
      const controllersCpuS = (await cpuSecondsOf(a.pid)) + (await cpuSecondsOf(b.pid)) - cpuBefore;
      const clientCpu = process.cpuUsage(clientCpuBefore);
      const clientCpuS = (clientCpu.user + clientCpu.system) / 1e6;
      const mariadbCpuS = mariadb === null ? null : (await cpuSecondsOf(mariadb)) - mariadbCpuBefore;
      const claimed = results.filter((r) => r.status === 'fulfilled').length;
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      // The deploys the boots started go on in the background: counted until each has powered its node and waits for the
      // agent, the statements per boot no longer depend on how long the storm happened to last.
      const deployStartS = await waitForDeployStarts(sql, claimed);
      const statusPerBootWithDeployStart = statusDelta(statusBefore, await globalStatus(sql), boots);
      const controllersCpuUntilDeploysWaitS = (await cpuSecondsOf(a.pid)) + (await cpuSecondsOf(b.pid)) - cpuBefore;

      const [[doubleNodes]] = await sql.query<mysql.RowDataPacket[]>(
        'SELECT COUNT(*) AS n FROM (SELECT instance_uuid FROM nodes WHERE instance_uuid IS NOT NULL GROUP BY instance_uuid HAVING COUNT(*) > 1) d',
      );
      const [[doubleInstances]] = await sql.query<mysql.RowDataPacket[]>(
        'SELECT COUNT(*) AS n FROM (SELECT node_uuid FROM instances WHERE node_uuid IS NOT NULL GROUP BY node_uuid HAVING COUNT(*) > 1) d',
      );
      const [[mismatched]] = await sql.query<mysql.RowDataPacket[]>(
        'SELECT COUNT(*) AS n FROM instances i LEFT JOIN nodes n ON n.uuid = i.node_uuid AND n.instance_uuid = i.uuid WHERE n.uuid IS NULL',
      );
      let doubleBookings = Number(doubleNodes!.n) + Number(doubleInstances!.n) + Number(mismatched!.n);

      // Where the boot path's time goes: the scheduler's claims alone, two schedulers with a controller's pool each, on the nodes still free.
      ctx.log(`${boots} claims straight through two Scheduler instances`);
      const handles = [
        await openDatabase(a.databaseUrl, { connectionLimit: POOL }),
        await openDatabase(a.databaseUrl, { connectionLimit: POOL }),
      ];
      let schedulerOnlyPerS: number;
      let schedulerOnlyClaimed: number;
      try {
        const schedulers = handles.map((h) => new Scheduler(h.db));
        await Promise.all(handles.map((h) => h.pool.query('SELECT 1')));
        const record = {
          uuid: flavor.uuid,
          name: flavor.name,
          ramMb: flavor.ramMb,
          diskGb: flavor.diskGb,
          cpus: flavor.cpus,
          extraSpecs: {},
          createdAt: new Date(),
        };
        const t2 = performance.now();
        const direct = await Promise.allSettled(
          Array.from({ length: boots }, (_, i) => schedulers[i % 2]!.claim(record, uuidv7(), `bench-scheduler-${i % 2}`)),
        );
        schedulerOnlyPerS = direct.filter((r) => r.status === 'fulfilled').length / ((performance.now() - t2) / 1000);
        schedulerOnlyClaimed = direct.filter((r) => r.status === 'fulfilled').length;
      } finally {
        await Promise.all(handles.map((h) => h.close()));
      }
      const [[doubleAfter]] = await sql.query<mysql.RowDataPacket[]>(
        'SELECT COUNT(*) AS n FROM (SELECT instance_uuid FROM nodes WHERE instance_uuid IS NOT NULL GROUP BY instance_uuid HAVING COUNT(*) > 1) d',
      );

      ctx.log('the peer: raw conditional UPDATEs on the same MariaDB');
      doubleBookings += Number(doubleAfter!.n);
      const raw = await rawClaims(nodeCount, boots);
      const claimsPerS = claimed / bootS;
      return {
        results: {
          nodes: nodeCount,
          boots,
          controllers: 2,
          enroll_s: Math.round(enrollS * 10) / 10,
          claimed,
          refused: refused.length,
          first_refusal: refused[0] ? String((refused[0].reason as Error).message).slice(0, 200) : null,
          boot_storm_s: Math.round(bootS * 100) / 100,
          claims_per_s: Math.round(claimsPerS),
          controllers_cpu_s_during_storm: Math.round(controllersCpuS * 10) / 10,
          client_cpu_s_during_storm: Math.round(clientCpuS * 10) / 10,
          mariadb_cpu_s_during_storm: mariadbCpuS === null ? null : Math.round(mariadbCpuS * 10) / 10,
          mariadb_status_per_boot_during_storm: statusPerBoot,
          deploys_waiting_for_agents_after_s: deployStartS === null ? null : Math.round(deployStartS * 100) / 100,
          controllers_cpu_s_until_deploys_wait: Math.round(controllersCpuUntilDeploysWaitS * 100) / 100,
          controllers_cpu_ms_per_boot_until_deploys_wait: Math.round((controllersCpuUntilDeploysWaitS / boots) * 1000 * 100) / 100,
          mariadb_status_per_boot_until_deploys_wait: statusPerBootWithDeployStart,
          scheduler_only_claims_per_s: Math.round(schedulerOnlyPerS),
          scheduler_only_claimed: schedulerOnlyClaimed,
          scheduler_only_vs_raw: Math.round((schedulerOnlyPerS / raw.perSecond) * 100) / 100,
          raw_conditional_updates_per_s: Math.round(raw.perSecond),
          raw_claimed: raw.claimed,
          double_bookings: doubleBookings,
        },
        goals: [
          goal(
            'claims/s vs raw conditional UPDATEs/s',
            claimed === boots ? claimsPerS / raw.perSecond : null,
            '>=',
            0.5,
            claimed === boots ? undefined : `${refused.length} of ${boots} boots refused on ${nodeCount} nodes`,
          ),
          goal('double bookings', doubleBookings, '<=', 0),
        ],
      };
    } finally {
      await sql.end();
    }
  } finally {
    for (const c of conns) c.close();
    await b?.stop({ keepDatabase: true });
    await a?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
