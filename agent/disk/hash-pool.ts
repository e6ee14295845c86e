/**
 * Worker threads that hash 4 MiB blocks, so the agent's main thread keeps
 * receiving and writing frames while SHA-256 (slower per core than the
 * stream; docs/performance-notes.md) runs on the node's other cores. One pool per process, sized to the cores: all
 * but one (the main thread's), at least one, at most eight.
 *
 * Tasks wait in the pool's queue and each worker holds at most two (one
 * running, one ready), so a task whose stream was abandoned (its signal
 * aborted) is dropped before it costs anything, and a superseding stream's
 * blocks do not queue behind a dead stream's.
 *
 * Workers are started from source text (hash-worker.ts) so they run from the
 * esbuild bundle too, and are unreferenced while idle so an idle pool never
 * keeps the process alive.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { TargetIoError } from '../errors.ts';
import { HASH_WORKER_SOURCE } from './hash-worker.ts';

export type HashTask =
  | { readonly kind: 'memory'; readonly buffer: SharedArrayBuffer; readonly offset: number; readonly length: number }
  | { readonly kind: 'file'; readonly path: string; readonly start: number; readonly end: number; readonly zeros: readonly number[] };

type WireTask = (HashTask & { readonly session?: number; readonly final?: boolean }) | { readonly kind: 'drop'; readonly session: number };

interface Queued {
  readonly task: WireTask;
  readonly hex: boolean;
  readonly signal: AbortSignal | undefined;
  /** Run on this worker (a session's pieces must share one hash). */
  readonly slot: Slot | undefined;
  readonly resolve: (digest: Uint8Array | string) => void;
  readonly reject: (error: unknown) => void;
}

interface Slot {
  worker: Worker | undefined;
  readonly running: Map<number, Queued>;
}

interface Reply {
  readonly id: number;
  readonly digest?: Uint8Array | string;
  readonly error?: string;
}

export const MAX_HASH_WORKERS = 8;
/** The workers' thread name, as `ps -L` and /proc/<pid>/task/<tid>/comm show it. */
export const HASH_THREAD_NAME = 'bm-hash';
/** Tasks handed to one worker at once: one running, one ready to start. */
const PER_WORKER = 2;
/** A plain sha256 read back in pieces of this size, checking for abandonment between them. */
const SEQUENTIAL_PIECE_BYTES = 64 * 1024 * 1024;

export function defaultHashWorkers(): number {
  return Math.max(1, Math.min(MAX_HASH_WORKERS, availableParallelism() - 1));
}

export class HashPool {
  readonly size: number;
  readonly #slots: Slot[];
  readonly #queue: Queued[] = [];
  #nextId = 1;
  #nextSession = 1;
  #closed = false;

  constructor(size = defaultHashWorkers()) {
    if (!Number.isSafeInteger(size) || size < 1 || size > MAX_HASH_WORKERS)
      throw new RangeError(`hash workers must be an integer in [1, ${MAX_HASH_WORKERS}], got ${size}`);
    this.size = size;
    this.#slots = Array.from({ length: size }, () => ({ worker: undefined, running: new Map<number, Queued>() }));
  }

  /** The raw sha256 (32 bytes) of the task's bytes. */
  digest(task: HashTask, signal?: AbortSignal): Promise<Uint8Array> {
    return this.#enqueue(task, false, signal, undefined) as Promise<Uint8Array>;
  }

  /**
   * The hex sha256 of bytes [0, length) of the file at `path`, the sorted
   * flat [start, end) pairs in `zeros` hashed as zeros without reading: one
   * sequential hash, on one worker, sent in pieces so an aborted signal stops
   * it within a piece.
   */
  async fileSha256(path: string, length: number, zeros: readonly number[], signal?: AbortSignal): Promise<string> {
    const slot = this.#slots[(this.#nextSession - 1) % this.size] as Slot;
    const session = this.#nextSession++;
    let zeroIndex = 0;
    try {
      for (let start = 0; ; start += SEQUENTIAL_PIECE_BYTES) {
        const end = Math.min(length, start + SEQUENTIAL_PIECE_BYTES);
        const pieceZeros: number[] = [];
        // Zero ranges are sorted: take those that start in this piece, clipped; one may straddle into the next.
        while (zeroIndex + 1 < zeros.length && (zeros[zeroIndex] as number) < end) {
          const zeroStart = Math.max(start, zeros[zeroIndex] as number);
          const zeroEnd = Math.min(end, zeros[zeroIndex + 1] as number);
          if (zeroEnd > zeroStart) pieceZeros.push(zeroStart, zeroEnd);
          if ((zeros[zeroIndex + 1] as number) > end) break;
          zeroIndex += 2;
        }
        const final = end >= length;
        const digest = await this.#enqueue({ kind: 'file', path, start, end, zeros: pieceZeros, session, final }, true, signal, slot);
        if (final) return digest as string;
      }
    } catch (error) {
      if (!this.#closed) void this.#enqueue({ kind: 'drop', session }, false, undefined, slot).catch(() => undefined);
      throw error;
    }
  }

  /** Tasks queued or running. */
  get pending(): number {
    return this.#queue.length + this.#slots.reduce((sum, slot) => sum + slot.running.size, 0);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const queued of this.#queue.splice(0)) queued.reject(new Error('the hash pool is closed'));
    await Promise.all(this.#slots.map((slot) => slot.worker?.terminate()));
  }

  #enqueue(task: WireTask, hex: boolean, signal: AbortSignal | undefined, slot: Slot | undefined): Promise<Uint8Array | string> {
    if (this.#closed) return Promise.reject(new Error('the hash pool is closed'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      this.#queue.push({ task, hex, signal, slot, resolve, reject });
      this.#pump();
    });
  }

  /** Hands queued tasks to workers with room, in order; drops those whose signal aborted. */
  #pump(): void {
    for (let index = 0; index < this.#queue.length; ) {
      const queued = this.#queue[index] as Queued;
      if (queued.signal?.aborted) {
        this.#queue.splice(index, 1);
        queued.reject(queued.signal.reason);
        continue;
      }
      const slot = queued.slot ?? this.#leastBusy();
      if (slot.running.size >= PER_WORKER) {
        if (queued.slot === undefined) return; // every worker is full
        index++; // a pinned task waits for its own worker; others may go ahead
        continue;
      }
      this.#queue.splice(index, 1);
      const worker = (slot.worker ??= this.#start(slot));
      const id = this.#nextId++;
      if (slot.running.size === 0) worker.ref();
      slot.running.set(id, queued);
      worker.postMessage({ ...queued.task, id, hex: queued.hex });
    }
  }

  #leastBusy(): Slot {
    // Ties go to the first, so a lightly loaded pool starts few threads.
    let best = this.#slots[0] as Slot;
    for (const slot of this.#slots) if (slot.running.size < best.running.size) best = slot;
    return best;
  }

  #start(slot: Slot): Worker {
    // Small heaps: a worker holds one read buffer and hashes; the bytes live in
    // the file or in shared memory, never on its own heap.
    const worker = new Worker(HASH_WORKER_SOURCE, {
      eval: true,
      name: HASH_THREAD_NAME,
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
    });
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const queued = slot.running.get(reply.id);
      if (queued === undefined) return;
      slot.running.delete(reply.id);
      if (slot.running.size === 0) worker.unref();
      if (reply.error !== undefined) queued.reject(new TargetIoError(`hashing failed: ${reply.error}`));
      else queued.resolve(reply.digest ?? '');
      this.#pump();
    });
    const fail = (error: unknown): void => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      const running = [...slot.running.values()];
      slot.running.clear();
      for (const queued of running)
        queued.reject(new TargetIoError(`a hashing worker stopped: ${error instanceof Error ? error.message : String(error)}`, {}, error));
      if (!this.#closed) this.#pump();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
    return worker;
  }
}

let shared: HashPool | undefined;

/** The process's pool; its workers start on first use. */
export function sharedHashPool(): HashPool {
  return (shared ??= new HashPool());
}
