/**
 * A rack's worth of PXE ROMs fetching the same file over TFTP at once (each
 * with its own socket, blksize and tsize as ROMs ask, retrying on timeout):
 * the time until every client has it, and how many failed. Also a program
 * for benches in a namespace: `node test/boot/tftp-storm.ts JSON`.
 */
import { tftpGet } from './tftp-client.ts';

export interface TftpStormOptions {
  readonly host: string;
  readonly port: number;
  readonly file: string;
  readonly clients: number;
  /** PXE ROMs ask 1456 or 1432 (iPXE's undionly asks 1432 itself). */
  readonly blksize?: number;
  readonly timeoutMs?: number;
  readonly retries?: number;
}

export interface TftpStormResult {
  readonly clients: number;
  readonly completed: number;
  readonly failed: number;
  /** Time until the last client had the whole file (null when any failed). */
  readonly allDoneMs: number | null;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  /** Distinct digests among completed fetches (must be 1). */
  readonly digests: number;
  readonly errors: Readonly<Record<string, number>>;
}

export async function runTftpStorm(o: TftpStormOptions): Promise<TftpStormResult> {
  const t0 = performance.now();
  const errors: Record<string, number> = {};
  const times: number[] = [];
  const digests = new Set<string>();
  await Promise.all(
    Array.from({ length: o.clients }, async () => {
      try {
        const r = await tftpGet({
          host: o.host,
          port: o.port,
          file: o.file,
          blksize: o.blksize ?? 1456,
          tsize: true,
          timeoutMs: o.timeoutMs ?? 1000,
          retries: o.retries ?? 6,
        });
        times.push(performance.now() - t0);
        digests.add(r.sha256);
      } catch (err) {
        const key = err instanceof Error ? err.message : String(err);
        errors[key] = (errors[key] ?? 0) + 1;
      }
    }),
  );
  times.sort((a, b) => a - b);
  const pct = (q: number): number | null =>
    times.length === 0 ? null : Math.round(times[Math.min(times.length - 1, Math.floor(q * times.length))]!);
  const failed = o.clients - times.length;
  return {
    clients: o.clients,
    completed: times.length,
    failed,
    allDoneMs: failed === 0 ? Math.round(times[times.length - 1] ?? 0) : null,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
    digests: digests.size,
    errors,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runTftpStorm(JSON.parse(process.argv[2] ?? '{}') as TftpStormOptions);
  process.stdout.write(JSON.stringify(result) + '\n');
}
