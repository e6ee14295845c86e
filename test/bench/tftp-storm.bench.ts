/**
 * A rack powering on fetches iPXE at once: 1,000 clients ask for
 * undionly.kpxe over TFTP together (test/boot/tftp-storm.ts: blksize 1456 and
 * tsize as PXE ROMs ask, 1 s timeout, 6 retries), ours against tftpd-hpa in
 * the same run, each in the server namespace on its own port, the clients in
 * theirs. Measured: time until every client had the whole file, and failures.
 */
import type { ChildProcess } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLan, nsExec, nsSpawn, stopChild, waitForLine, type Lan, type Leaf } from '../boot/netns.ts';
import { requirePeer } from '../boot/peers.ts';
import type { TftpStormResult } from '../boot/tftp-storm.ts';
import { goal, type BenchContext, type BenchReport } from './harness.ts';

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

async function storm(cli: Leaf, port: number, clients: number): Promise<TftpStormResult> {
  const options = { host: '10.96.0.1', port, file: 'undionly.kpxe', clients };
  const { stdout } = await nsExec(cli.ns, process.execPath, [path.join(repo, 'test/boot/tftp-storm.ts'), JSON.stringify(options)], 300_000);
  return JSON.parse(stdout.trim().split('\n').pop()!) as TftpStormResult;
}

export default async function tftpStormBench(ctx: BenchContext): Promise<BenchReport> {
  const tftpd = requirePeer('/usr/sbin/in.tftpd');
  const kpxe = requirePeer('/usr/lib/ipxe/undionly.kpxe');
  const clients = Math.max(10, Math.round(1000 * ctx.scale));
  const dir = await mkdtemp(path.join(tmpdir(), 'bm-tftp-storm-'));
  const root = path.join(dir, 'root');
  await mkdir(root);
  await copyFile(kpxe, path.join(root, 'undionly.kpxe'));
  // tftpd-hpa drops to nobody: let it read.
  await chmod(dir, 0o755);
  await chmod(root, 0o755);
  await chmod(path.join(root, 'undionly.kpxe'), 0o644);
  let lan: Lan | null = null;
  const children: ChildProcess[] = [];
  const results: Record<string, unknown> = { clients, file: 'undionly.kpxe' };
  try {
    lan = await createLan();
    const srv = await lan.addLeaf('srv', '10.96.0.1/24');
    const cli = await lan.addLeaf('cli', '10.96.0.2/24');
    const ports = { ours: 6969, 'tftpd-hpa': 7069 } as const;
    const ours = nsSpawn(srv.ns, process.execPath, [
      path.join(repo, 'test/boot/boot-runner.ts'),
      JSON.stringify({ tftp: { root, address: '10.96.0.1', port: ports.ours } }),
    ]);
    children.push(ours);
    await waitForLine(ours, /"ready"/);
    // -L: foreground; -s: chroot to the root, as a packaged tftpd-hpa runs.
    children.push(nsSpawn(srv.ns, tftpd, ['-L', '-s', root, '-a', `10.96.0.1:${ports['tftpd-hpa']}`]));
    await new Promise((r) => setTimeout(r, 300));
    // Warm-up (page cache, JIT) with a few clients each, then the storms, alternating twice.
    for (const port of Object.values(ports)) await storm(cli, port, 5);
    const runs: Record<string, TftpStormResult[]> = { ours: [], 'tftpd-hpa': [] };
    for (let round = 0; round < 2; round++) {
      for (const name of ['ours', 'tftpd-hpa'] as const) {
        const r = await storm(cli, ports[name], clients);
        runs[name]!.push(r);
        ctx.log(
          `${name}: ${r.completed}/${clients} in ${r.allDoneMs ?? 'n/a'} ms (p50 ${r.p50Ms} ms), ${r.failed} failed ${JSON.stringify(r.errors)}`,
        );
      }
    }
    const best = (rs: TftpStormResult[]): TftpStormResult =>
      rs.reduce((b, r) => ((r.allDoneMs ?? Infinity) < (b.allDoneMs ?? Infinity) ? r : b));
    const oursBest = best(runs.ours!);
    const hpaBest = best(runs['tftpd-hpa']!);
    results.ours = runs.ours;
    results['tftpd-hpa'] = runs['tftpd-hpa'];
    const failures = runs.ours!.reduce((n, r) => n + r.failed, 0);
    const ratio = oursBest.allDoneMs !== null && hpaBest.allDoneMs !== null ? oursBest.allDoneMs / hpaBest.allDoneMs : null;
    results.ratioOursVsTftpdHpaTime = ratio;
    return {
      results,
      goals: [
        goal(
          'TFTP storm: ours time-to-all vs tftpd-hpa (best of two)',
          ratio,
          '<=',
          1,
          ratio === null ? 'a run had failures, so no time-to-all' : undefined,
        ),
        goal('TFTP storm: failed fetches from ours over all runs', failures, '<=', 0),
      ],
    };
  } finally {
    for (const c of children) await stopChild(c);
    await lan?.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}
