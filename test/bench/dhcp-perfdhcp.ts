/**
 * perfdhcp (Kea's DHCP load generator, relay mode: it sets giaddr and
 * unicasts to the server) at a fixed offered rate, and a ladder of rising
 * rates until the server saturates. The server is 10.98.0.1 (the DHCP
 * benches' subnet).
 */
import { nsExec, type Leaf } from '../boot/netns.ts';
import { requirePeer } from '../boot/peers.ts';
import type { BenchContext } from './harness.ts';

export interface Step {
  readonly offered: number;
  readonly rate: number;
  readonly dropRatio: number;
}

export function parsePerfdhcp(out: string): { rate: number; sentDiscover: number; recvAck: number } {
  const rate = Number(/Rate: ([\d.]+) 4-way exchanges\/second/.exec(out)?.[1] ?? NaN);
  const sections = out.split('***Statistics for: ');
  const num = (section: string | undefined, label: string): number => Number(new RegExp(`${label}: (\\d+)`).exec(section ?? '')?.[1] ?? 0);
  const doSec = sections.find((s) => s.startsWith('DISCOVER-OFFER'));
  const raSec = sections.find((s) => s.startsWith('REQUEST-ACK'));
  return { rate, sentDiscover: num(doSec, 'sent packets'), recvAck: num(raSec, 'received packets') };
}

export async function perfdhcp(
  cli: Leaf,
  offered: number,
  seconds: number,
  clients: number,
  extra: string[] = [],
): Promise<Step & { out: string }> {
  const bin = requirePeer('/usr/sbin/perfdhcp');
  const { stdout } = await nsExec(
    cli.ns,
    bin,
    ['-4', '-r', String(offered), '-R', String(clients), '-p', String(seconds), '-W', '500000', ...extra, '10.98.0.1'],
    (seconds + 30) * 1000,
  ).catch((err: { stdout?: string; stderr?: string }) => ({ stdout: (err.stdout ?? '') + (err.stderr ?? '') }));
  const p = parsePerfdhcp(stdout);
  const dropRatio = p.sentDiscover > 0 ? 1 - p.recvAck / p.sentDiscover : 1;
  return { offered, rate: Number.isFinite(p.rate) ? Math.round(p.rate) : 0, dropRatio: Math.round(dropRatio * 10000) / 10000, out: stdout };
}

export async function ladder(
  ctx: BenchContext,
  name: string,
  cli: Leaf,
  rates: readonly number[],
  seconds: number,
): Promise<{ steps: Step[]; best: number; bestDrop: number | null; peak: number }> {
  const steps: Step[] = [];
  for (const offered of rates) {
    const s = await perfdhcp(cli, offered, seconds, 20000);
    steps.push({ offered: s.offered, rate: s.rate, dropRatio: s.dropRatio });
    ctx.log(`${name} @${offered}/s: ${s.rate} exchanges/s, drop ratio ${s.dropRatio}`);
    if (s.rate === 0) ctx.log(s.out.slice(-1500));
    // Past saturation: more offered load only adds drops.
    if (s.dropRatio > 0.2 || s.rate < offered * 0.5) break;
  }
  const good = steps.filter((s) => s.dropRatio <= 0.01);
  const bestStep = good.reduce<Step | null>((b, s) => (b === null || s.rate > b.rate ? s : b), null);
  return { steps, best: bestStep?.rate ?? 0, bestDrop: bestStep?.dropRatio ?? null, peak: Math.max(0, ...steps.map((s) => s.rate)) };
}
