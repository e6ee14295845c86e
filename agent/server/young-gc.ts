/**
 * Minor GCs paced by the image bytes the agent receives. Node's HTTP/2 puts
 * every socket read in a fresh ArrayBuffer (about 16 per MiB); they die
 * young, but V8 scavenges only when its young generation (1 MiB here) fills
 * with JS objects, and the agent allocates few: one scavenge per 30–60 MiB
 * received, so 25–60 MiB of dead read buffers sat in the agent's RSS at its
 * peak. A scavenge every 2 MiB frees them while they are still few, for
 * about the CPU it takes to notice (docs/performance-notes.md).
 *
 * It needs Node's `--expose-gc` (the ramdisk passes it); without it the
 * pacer does nothing and V8 collects as it would.
 */

/** Node's gc() under --expose-gc: a synchronous scavenge when asked for a minor one. */
export type GcHook = (options: { readonly type: 'minor'; readonly execution: 'sync' }) => void;

/** Received bytes between two scavenges. */
export const YOUNG_GC_EVERY_BYTES = 2 * 1024 * 1024;

export class YoungGcPacer {
  readonly #gc: GcHook | undefined;
  readonly #everyBytes: number;
  #sinceLast = 0;
  #runs = 0;

  constructor(gc: GcHook | undefined, everyBytes = YOUNG_GC_EVERY_BYTES) {
    if (!Number.isSafeInteger(everyBytes) || everyBytes <= 0)
      throw new RangeError(`everyBytes must be a positive integer, got ${everyBytes}`);
    this.#gc = gc;
    this.#everyBytes = everyBytes;
  }

  /** Scavenges run so far. */
  get runs(): number {
    return this.#runs;
  }

  /** Counts `bytes` received; scavenges once `everyBytes` have come in since the last. */
  received(bytes: number): void {
    if (this.#gc === undefined) return;
    this.#sinceLast += bytes;
    if (this.#sinceLast < this.#everyBytes) return;
    this.#sinceLast = 0;
    this.#runs++;
    this.#gc({ type: 'minor', execution: 'sync' });
  }
}

function exposedGc(): GcHook | undefined {
  const gc: unknown = (globalThis as { gc?: unknown }).gc;
  return typeof gc === 'function' ? (gc as GcHook) : undefined;
}

/** The process's pacer: every image stream of this agent counts into it. */
export const youngGc = new YoungGcPacer(exposedGc());
