/**
 * Enrollment at fleet scale: 10,000 nodes through the gRPC API (bounded
 * concurrency), then the full list page by page. The peer is the database
 * itself: the same rows written and read with plain mysql2 at the same
 * concurrency, which is the ceiling the API can approach.
 */
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect } from '../../proto/rpc/index.ts';
import { parseDatabaseUrl } from '../../db/connect.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { uuidv7 } from '../../controller/nodes/uuid.ts';
import { startControllerProcess, uniqueDatabaseUrl } from '../../controller/lab/index.ts';
import { goal, type BenchContext, type BenchReport } from './harness.ts';

const CONCURRENCY = 32;

function mac(i: number): string {
  const h = i.toString(16).padStart(6, '0');
  return `52:54:01:${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}`;
}

async function pool<T>(count: number, concurrency: number, work: (i: number) => Promise<T>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

async function rawPeer(count: number): Promise<{ insertS: number; selectS: number }> {
  const url = uniqueDatabaseUrl('bm_bench_raw');
  await syncDatabase(url);
  const p = parseDatabaseUrl(url);
  const conns = mysql.createPool({ host: p.host, port: p.port, user: p.user, database: p.database, connectionLimit: CONCURRENCY });
  try {
    const sealed = randomBytes(45);
    const t0 = performance.now();
    await pool(count, CONCURRENCY, async (i) => {
      const uuid = uuidv7();
      const c = await conns.getConnection();
      try {
        await c.beginTransaction();
        await c.query(
          'INSERT INTO nodes (uuid, name, group_name, cpus, memory_mb, local_gb, cpu_arch, pm_address, pm_port, pm_user, pm_password_enc, power_driver, properties) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)',
          [uuid, `raw-${i}`, 'default', 8, 16384, 100, 'x86_64', '192.0.2.1', 623, 'admin', sealed, 'ipmi', '{}'],
        );
        await c.query('INSERT INTO ports (uuid, node_uuid, address) VALUES (?,?,?)', [uuidv7(), uuid, mac(i)]);
        await c.commit();
      } finally {
        c.release();
      }
    });
    const insertS = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    let marker = '';
    for (;;) {
      const [rows] = await conns.query<mysql.RowDataPacket[]>('SELECT * FROM nodes WHERE uuid > ? ORDER BY uuid LIMIT 1000', [marker]);
      if (rows.length === 0) break;
      await conns.query('SELECT node_uuid, address FROM ports WHERE node_uuid IN (?)', [rows.map((r) => r.uuid as string)]);
      marker = rows[rows.length - 1]!.uuid as string;
      if (rows.length < 1000) break;
    }
    return { insertS, selectS: (performance.now() - t1) / 1000 };
  } finally {
    await conns.end();
    await dropDatabase(url);
  }
}

export default async function enroll(ctx: BenchContext): Promise<BenchReport> {
  const count = Math.max(100, Math.round(10_000 * ctx.scale));
  const ctl = await startControllerProcess({ logLevel: 'warn' });
  const conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
  const nodes = conn.client(NodeService);
  try {
    ctx.log(`enrolling ${count} nodes through the API, ${CONCURRENCY} at a time`);
    const t0 = performance.now();
    await pool(count, CONCURRENCY, (i) =>
      nodes.createNode({
        name: `bench-${i}`,
        pmAddress: '192.0.2.1',
        pmUser: 'admin',
        pmPassword: 'bench-password',
        cpus: 8,
        memoryMb: 16384,
        localGb: 100,
        cpuArch: 'x86_64',
        mac: mac(i),
      }),
    );
    const enrollS = (performance.now() - t0) / 1000;
    ctx.log(`listing all ${count} nodes page by page`);
    const t1 = performance.now();
    let marker = '';
    let listed = 0;
    do {
      const page = await nodes.listNodes({ limit: 1000, marker });
      listed += page.nodes.length;
      marker = page.nextMarker;
    } while (marker !== '');
    const listS = (performance.now() - t1) / 1000;
    if (listed !== count) throw new Error(`listed ${listed} nodes, enrolled ${count}`);

    ctx.log('peer: the same rows through plain mysql2');
    const raw = await rawPeer(count);
    const fullScale = count / 10_000;
    return {
      results: {
        nodes: count,
        concurrency: CONCURRENCY,
        enroll_seconds: +enrollS.toFixed(2),
        enroll_nodes_per_s: Math.round(count / enrollS),
        full_list_seconds: +listS.toFixed(3),
        raw_mysql_insert_seconds: +raw.insertS.toFixed(2),
        raw_mysql_nodes_per_s: Math.round(count / raw.insertS),
        raw_mysql_list_seconds: +raw.selectS.toFixed(3),
        api_vs_raw_insert_ratio: +(raw.insertS / enrollS).toFixed(3),
        api_vs_raw_list_ratio: +(raw.selectS / listS).toFixed(3),
      },
      goals: [
        goal(
          'enroll 10,000 nodes (s)',
          fullScale === 1 ? enrollS : null,
          '<=',
          30,
          fullScale === 1 ? undefined : `run at BENCH_SCALE=${ctx.scale}; judged at full scale`,
        ),
        goal(
          'list 10,000 nodes (s)',
          fullScale === 1 ? listS : null,
          '<=',
          1,
          fullScale === 1 ? undefined : `run at BENCH_SCALE=${ctx.scale}; judged at full scale`,
        ),
      ],
    };
  } finally {
    conn.close();
    await ctl.stop();
  }
}
