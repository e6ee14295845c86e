/**
 * Streaming throughput of the JetStream object store (issue 16) against the
 * local-disk store, in the same run: one 1 GiB blob (BENCH_SCALE scales it)
 * of random bytes stored in both, then read whole with openRead, as the
 * HTTP boot port and the deploy stream read it.
 *
 * - local: LocalBlobStore, the peer (median of three reads, alternated with the warm ones).
 * - jetstream cold: a second controller's store (empty cache directory),
 *   so the read fetches the object from NATS into its cache and verifies it first.
 * - jetstream warm: the same store again, served from its verified cache.
 * - jetstream warm after restart: a new store over that cache directory,
 *   which hashes the cached copy once before serving it.
 *
 * Both stores write and read through the same page cache (nothing is
 * dropped: other work shares this machine), so local and warm figures are
 * memory-speed reads; the cold figure is bounded by NATS.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { natsUrl, uniqueNatsPrefix } from '../../controller/lab/index.ts';
import type { BlobStore } from '../../controller/images/blob-store.ts';
import { bucketName, JetStreamBlobStore } from '../../controller/images/jetstream-blob-store.ts';
import { LocalBlobStore } from '../../controller/images/local-blob-store.ts';
import { goal, peakRssMiB, type BenchContext, type BenchReport } from './harness.ts';

const run = promisify(execFile);
const MIB = 1024 * 1024;
const FULL_BYTES = 1024 * MIB;
const ROUNDS = 3;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** `size` bytes of random data, 1 MiB at a time, the same bytes for every call with the same seed buffer. */
async function* blob(size: number, seed: Buffer): AsyncGenerator<Uint8Array> {
  for (let at = 0, i = 0; at < size; at += MIB, i++) {
    const chunk = Buffer.from(seed.subarray(0, Math.min(MIB, size - at)));
    // Every MiB differs from the others (no store may deduplicate or compress it away).
    chunk.writeUInt32LE(i, 0);
    yield chunk;
  }
}

async function timed<T>(work: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t0 = performance.now();
  const value = await work();
  return { seconds: (performance.now() - t0) / 1000, value };
}

/** Reads a blob whole; `openSeconds` is the wait before the first byte (for a cold cache: the fetch and its verification). */
async function drain(store: BlobStore, sha256: string): Promise<{ bytes: number; openSeconds: number }> {
  const t0 = performance.now();
  const stream = await store.openRead(sha256);
  const openSeconds = (performance.now() - t0) / 1000;
  let bytes = 0;
  for await (const chunk of stream) bytes += (chunk as Buffer).length;
  return { bytes, openSeconds };
}

const mbPerSecond = (bytes: number, seconds: number): number => Math.round((bytes / 1e6 / seconds) * 10) / 10;

export default async function blobstoreBench(ctx: BenchContext): Promise<BenchReport> {
  const size = Math.max(16 * MIB, Math.round((FULL_BYTES * ctx.scale) / MIB) * MIB);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bm-blobbench-'));
  const nc = await connect({ servers: natsUrl, name: 'bm-bench-blobstore' });
  const bucket = bucketName(uniqueNatsPrefix(), 'images');
  let uploader: JetStreamBlobStore | null = null;
  try {
    const seed = randomBytes(MIB);
    const local = new LocalBlobStore(path.join(dir, 'local'));
    uploader = await JetStreamBlobStore.open(nc, { bucket, replicas: 1, cacheDir: path.join(dir, 'cache-a') });

    ctx.log(`storing ${size / MIB} MiB in the local store`);
    const localPut = await timed(() => local.put(blob(size, seed)));
    ctx.log(`storing it in the JetStream object store (bucket ${bucket})`);
    const jsPut = await timed(() => uploader!.put(blob(size, seed)));
    const { sha256 } = jsPut.value;
    if (sha256 !== localPut.value.sha256) throw new Error('the two stores disagree on the digest');

    // The uploads left gigabytes of dirty pages (local store, staging, NATS's own file); a second
    // controller on another host would not be writing its cache behind them, so they are flushed first.
    ctx.log('flushing the uploads to disk');
    await run('sync', []);
    // A second controller: same bucket, empty cache.
    const reader = await JetStreamBlobStore.open(nc, { bucket, replicas: 1, cacheDir: path.join(dir, 'cache-b') });
    ctx.log('reading from JetStream, cold (fetch into the cache, verify, read)');
    const cold = await timed(() => drain(reader, sha256));
    const rssAfterCold = peakRssMiB();
    // Local and warm reads are both file reads: alternated, three each, medians compared, so the load of the moment hits both alike.
    const localRuns: number[] = [];
    const warmRuns: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      ctx.log(`round ${round + 1}/${ROUNDS}: reading from the local store, then from JetStream warm (verified cache)`);
      const l = await timed(() => drain(local, sha256));
      const w = await timed(() => drain(reader, sha256));
      for (const r of [l, w]) if (r.value.bytes !== size) throw new Error(`read ${r.value.bytes} of ${size} bytes`);
      localRuns.push(mbPerSecond(size, l.seconds));
      warmRuns.push(mbPerSecond(size, w.seconds));
    }
    const restarted = await JetStreamBlobStore.open(nc, { bucket, replicas: 1, cacheDir: path.join(dir, 'cache-b') });
    ctx.log('reading from JetStream, warm after a restart (hash the cached copy once)');
    const rehash = await timed(() => drain(restarted, sha256));
    for (const r of [cold, rehash]) if (r.value.bytes !== size) throw new Error(`read ${r.value.bytes} of ${size} bytes`);

    const localMBs = median(localRuns);
    const coldMBs = mbPerSecond(size, cold.seconds);
    const warmMBs = median(warmRuns);
    return {
      results: {
        blob_mib: size / MIB,
        put_local_mb_s: mbPerSecond(size, localPut.seconds),
        put_jetstream_mb_s: mbPerSecond(size, jsPut.seconds),
        read_local_mb_s: localMBs,
        read_local_runs_mb_s: localRuns,
        read_jetstream_cold_mb_s: coldMBs,
        cold_fetch_and_verify_s: Math.round(cold.value.openSeconds * 100) / 100,
        cold_fetch_and_verify_mb_s: mbPerSecond(size, cold.value.openSeconds),
        read_jetstream_warm_mb_s: warmMBs,
        read_jetstream_warm_runs_mb_s: warmRuns,
        read_jetstream_warm_after_restart_mb_s: mbPerSecond(size, rehash.seconds),
        load_average_1m: Math.round(os.loadavg()[0]! * 10) / 10,
        ratio_cold_to_local: Math.round((coldMBs / localMBs) * 1000) / 1000,
        ratio_warm_to_local: Math.round((warmMBs / localMBs) * 1000) / 1000,
        refetches: reader.cache.refetches + restarted.cache.refetches,
        peak_rss_after_both_puts_and_cold_fetch_mib: rssAfterCold,
        peak_rss_mib: peakRssMiB(),
      },
      goals: [
        goal(
          'warm read, ratio to the local store',
          warmMBs / localMBs,
          '>=',
          0.8,
          'a cached image streams as a local one does: both are a file read',
        ),
        goal(
          'cold read MB/s (fetch + verify + read)',
          coldMBs,
          '>=',
          117,
          "the first deploy of an image on a controller is not slower than one node's 1 GbE link",
        ),
        goal(
          'peak RSS MiB through both uploads and the cold fetch',
          rssAfterCold,
          '<=',
          512,
          'a fetch holds a bounded window of chunks, never the blob',
        ),
      ],
    };
  } finally {
    await uploader?.destroy().catch(() => undefined);
    await nc.close();
    await rm(dir, { recursive: true, force: true });
  }
}
