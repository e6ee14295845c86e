/**
 * TFTP throughput over a veth pair (client and server in their own
 * namespaces, joined by a bridge): a 30 MB file (scaled by ctx.scale).
 *
 * 1. Peers: ours vs tftpd-hpa vs dnsmasq, each fetched by the same client,
 *    in interleaved rounds (best of three per server).
 *    tftp-hpa's client negotiates no options (512-byte blocks, RFC 1350), so
 *    that is the first comparison; busybox's client with `-b 1428` is the
 *    "same blksize" comparison.
 * 2. Windowsize (RFC 7440): ours with windowsize 16 and 64 vs plain RFC 1350,
 *    all fetched by our own client (test/boot/tftp-client.ts), since no peer
 *    client speaks windowsize.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLan, nsExec, nsSpawn, stopChild, waitForLine, type Lan } from '../boot/netns.ts';
import { requirePeer } from '../boot/peers.ts';
import { goal, type BenchContext, type BenchReport } from './harness.ts';

const node = process.execPath;
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

export default async function tftpBench(ctx: BenchContext): Promise<BenchReport> {
  const tftp = requirePeer('/usr/bin/tftp');
  const busybox = requirePeer('/usr/bin/busybox');
  const tftpd = requirePeer('/usr/sbin/in.tftpd');
  const dnsmasq = requirePeer('/usr/sbin/dnsmasq');
  const size = Math.max(1, Math.round(30 * 1024 * 1024 * ctx.scale));
  const dir = await mkdtemp(path.join(tmpdir(), 'bm-tftp-bench-'));
  const root = path.join(dir, 'root');
  await mkdir(root);
  await writeFile(path.join(root, 'image.bin'), randomBytes(size));
  // Peers drop privileges (tftpd-hpa to nobody, dnsmasq to nobody): let them read.
  await chmod(dir, 0o755);
  await chmod(root, 0o755);
  await chmod(path.join(root, 'image.bin'), 0o644);
  let lan: Lan | null = null;
  const children: ChildProcess[] = [];
  const results: Record<string, unknown> = { fileBytes: size };
  try {
    lan = await createLan();
    const srv = await lan.addLeaf('srv', '10.97.0.1/24');
    const cli = await lan.addLeaf('cli', '10.97.0.2/24');
    const outFile = path.join(dir, 'out.bin');

    const hpaFetch = async (port: number): Promise<number> => {
      const secs = await timed(() =>
        nsExec(cli.ns, tftp, ['-m', 'binary', '10.97.0.1', String(port), '-c', 'get', 'image.bin', outFile], 600_000),
      );
      const got = (await stat(outFile)).size;
      if (got !== size) throw new Error(`tftp-hpa client got ${got} of ${size} bytes from port ${port}`);
      await rm(outFile, { force: true });
      return secs;
    };
    const busyboxFetch = async (port: number, blksize: number): Promise<number> => {
      const secs = await timed(() =>
        nsExec(
          cli.ns,
          busybox,
          ['tftp', '-g', '-b', String(blksize), '-r', 'image.bin', '-l', outFile, '10.97.0.1', String(port)],
          600_000,
        ),
      );
      const got = (await stat(outFile)).size;
      if (got !== size) throw new Error(`busybox tftp got ${got} of ${size} bytes from port ${port}`);
      await rm(outFile, { force: true });
      return secs;
    };
    const ownFetch = async (port: number, blksize: number, window: number): Promise<number> => {
      const { stdout } = await nsExec(
        cli.ns,
        node,
        [path.join(repo, 'test/boot/tftp-client.ts'), '10.97.0.1', String(port), 'image.bin', String(blksize), String(window)],
        600_000,
      );
      const r = JSON.parse(stdout.trim().split('\n').pop()!) as { bytes: number; ms: number };
      if (r.bytes !== size) throw new Error(`own client got ${r.bytes} of ${size} bytes`);
      return r.ms / 1000;
    };
    const mbps = (secs: number): number => Math.round((size / secs / 1e6) * 100) / 100;

    // All three servers run at once on their own ports, and are measured in
    // interleaved rounds, so a burst of load from elsewhere on this shared
    // machine hits every server alike. (dnsmasq cannot move off port 69.)
    const ports = { ours: 6969, 'tftpd-hpa': 7069, dnsmasq: 69 } as const;
    type Name = keyof typeof ports;
    const names = Object.keys(ports) as Name[];
    const oursChild = nsSpawn(srv.ns, node, [
      path.join(repo, 'test/boot/boot-runner.ts'),
      JSON.stringify({ tftp: { root, address: '10.97.0.1', port: ports.ours } }),
    ]);
    children.push(oursChild);
    await waitForLine(oursChild, /"ready"/);
    children.push(nsSpawn(srv.ns, tftpd, ['-L', '-s', root, '-a', `10.97.0.1:${ports['tftpd-hpa']}`]));
    const dm = nsSpawn(srv.ns, dnsmasq, [
      '--no-daemon',
      '--conf-file=/dev/null',
      '--port=0',
      '--enable-tftp',
      `--tftp-root=${root}`,
      '--listen-address=10.97.0.1',
      '--bind-interfaces',
      '--log-facility=-',
      `--pid-file=${path.join(dir, 'dnsmasq.pid')}`,
    ]);
    children.push(dm);
    await waitForLine(dm, /TFTP root is/);
    await new Promise((r) => setTimeout(r, 300));
    const hpaBest: Record<string, number> = {};
    const bbBest: Record<string, number> = {};
    for (const n of names) await busyboxFetch(ports[n], 1428); // warm-up: page cache, JIT
    for (let round = 0; round < 3; round++) {
      for (const n of names) {
        hpaBest[n] = Math.min(hpaBest[n] ?? Infinity, await hpaFetch(ports[n]));
        bbBest[n] = Math.min(bbBest[n] ?? Infinity, await busyboxFetch(ports[n], 1428));
      }
    }
    const peerRates: Record<string, { hpa512: number; busybox1428: number }> = {};
    for (const n of names) {
      peerRates[n] = { hpa512: mbps(hpaBest[n]!), busybox1428: mbps(bbBest[n]!) };
      ctx.log(`${n}: tftp-hpa client (512) ${peerRates[n]!.hpa512} MB/s, busybox -b 1428 ${peerRates[n]!.busybox1428} MB/s`);
    }
    const best = async (blksize: number, window: number): Promise<number> =>
      Math.min(await ownFetch(ports.ours, blksize, window), await ownFetch(ports.ours, blksize, window));
    const plain = await best(0, 0);
    const w16 = await best(1428, 16);
    const w64 = await best(1428, 64);
    const w16at512 = await best(512, 16);
    const b1428 = await best(1428, 1);
    results.windowed = {
      'plain RFC 1350 (512, window 1) MB/s': mbps(plain),
      'blksize 1428 window 1 MB/s': mbps(b1428),
      'blksize 1428 window 16 MB/s': mbps(w16),
      'blksize 1428 window 64 MB/s': mbps(w64),
      'blksize 512 window 16 MB/s': mbps(w16at512),
    };
    results.windowedVsPlain = { w16: Math.round((plain / w16) * 100) / 100, w64: Math.round((plain / w64) * 100) / 100 };
    ctx.log(`ours windowed: ${JSON.stringify(results.windowed)}`);
    const statsLine = waitForLine(oursChild, /"stats"/);
    oursChild.stdin?.write('stats\n');
    const stats = (JSON.parse(await statsLine) as { stats: { tftp: Record<string, number> } }).stats.tftp;
    results.oursServerStats = {
      retransmits: stats.retransmits,
      duplicateAcks: stats.duplicateAcks,
      transfersCompleted: stats.transfersCompleted,
      transfersFailed: stats.transfersFailed,
    };
    ctx.log(`ours server stats: ${JSON.stringify(results.oursServerStats)}`);
    results.peers = peerRates;
    const ours = peerRates.ours!;
    const fasterHpa = Math.max(peerRates['tftpd-hpa']!.hpa512, peerRates.dnsmasq!.hpa512);
    const fasterBb = Math.max(peerRates['tftpd-hpa']!.busybox1428, peerRates.dnsmasq!.busybox1428);
    results.ratioVsFasterPeer = { hpa512: ours.hpa512 / fasterHpa, busybox1428: ours.busybox1428 / fasterBb };
    const wr = results.windowedVsPlain as { w16: number; w64: number };
    return {
      results,
      goals: [
        goal('ours vs faster peer, tftp-hpa client, 512-byte blocks', ours.hpa512 / fasterHpa, '>=', 1.0),
        goal('ours vs faster peer, busybox client, blksize 1428', ours.busybox1428 / fasterBb, '>=', 1.0),
        goal('windowsize 16 vs plain RFC 1350', wr.w16, '>=', 5),
        goal('windowsize 64 vs plain RFC 1350', wr.w64, '>=', 5),
      ],
    };
  } finally {
    for (const c of children) await stopChild(c);
    await lan?.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}
