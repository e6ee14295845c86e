/**
 * What a relaying agent knows about the image it is writing, so it can
 * forward it (relay-image.ts): which image (the controller's image id and
 * size), which ranges were sent as data and which as zero runs (a follower
 * gets holes as holes, not as megabytes of zeros read back), and how far the
 * target is committed (fdatasync'd). A relay serves only committed bytes,
 * read back from the target: they are on the disk for good, and a later
 * stream of the same image (a resume after a broken stream, in this process)
 * rewrites only what lies after its resume offset, with the same bytes.
 *
 * One feed per image: a resumed WriteImage of the same image keeps it (the
 * followers wait through the gap), another image or an erase ends it, and
 * every relay reading it fails so the controller moves their followers to
 * itself.
 */
import { AgentError } from '../errors.ts';

export interface FeedRun {
  readonly offset: number;
  readonly length: number;
  /** false: a zero run, forwarded as a zero length. */
  readonly data: boolean;
}

/** The feed is gone (another image, an erase) or did not advance for too long. */
export class FeedEndedError extends AgentError {
  constructor(message: string, context: Readonly<Record<string, string | number>> = {}) {
    super('failed-precondition', message, context);
  }
}

export class ImageFeed {
  readonly imageId: string;
  readonly imageSize: number;
  /** The target the image is written to (relays open it read-only). */
  readonly path: string;
  readonly #runs: FeedRun[] = [];
  #committed: number;
  #ended: FeedEndedError | undefined;
  readonly #waiters = new Set<() => void>();

  constructor(imageId: string, imageSize: number, path: string, resumeOffset: number) {
    this.imageId = imageId;
    this.imageSize = imageSize;
    this.path = path;
    // Bytes before a resume offset came from an earlier stream (perhaps an earlier process): all forwarded as data.
    if (resumeOffset > 0) this.#runs.push({ offset: 0, length: resumeOffset, data: true });
    this.#committed = resumeOffset;
  }

  get committedOffset(): number {
    return this.#committed;
  }

  get ended(): boolean {
    return this.#ended !== undefined;
  }

  sameImage(imageId: string, imageSize: number, path: string): boolean {
    return !this.ended && this.imageId === imageId && this.imageSize === imageSize && this.path === path;
  }

  /**
   * A new stream of this image starts at `resumeOffset` (a committed offset):
   * what lay after it is sent again and recorded again.
   */
  restart(resumeOffset: number): void {
    while (this.#runs.length > 0) {
      const last = this.#runs.at(-1)!;
      if (last.offset >= resumeOffset) this.#runs.pop();
      else {
        if (last.offset + last.length > resumeOffset) this.#runs[this.#runs.length - 1] = { ...last, length: resumeOffset - last.offset };
        break;
      }
    }
    const end = this.#runs.length > 0 ? this.#runs.at(-1)!.offset + this.#runs.at(-1)!.length : 0;
    if (end < resumeOffset) this.#runs.push({ offset: end, length: resumeOffset - end, data: true });
    this.#committed = Math.min(this.#committed, resumeOffset);
  }

  /** A frame the writer took, in stream order (adjacent runs of one kind merge). */
  record(offset: number, length: number, data: boolean): void {
    if (length <= 0) return;
    const last = this.#runs.at(-1);
    if (last && last.data === data && last.offset + last.length === offset) {
      this.#runs[this.#runs.length - 1] = { offset: last.offset, length: last.length + length, data };
    } else {
      this.#runs.push({ offset, length, data });
    }
  }

  /** Every image byte before `offset` is durable on the target. */
  commit(offset: number): void {
    if (offset <= this.#committed) return;
    this.#committed = offset;
    this.#wake();
  }

  end(reason: string): void {
    this.#ended ??= new FeedEndedError(`the relayed image ended: ${reason}`, { imageId: this.imageId });
    this.#wake();
  }

  /**
   * Resolves with the committed offset once it lies past `position`; rejects
   * when the feed ends, `signal` aborts, or nothing is committed for
   * `stallMs` (a relay whose own stream stopped must let its followers go).
   */
  async waitPast(position: number, signal: AbortSignal, stallMs: number): Promise<number> {
    for (;;) {
      if (this.#ended) throw this.#ended;
      signal.throwIfAborted();
      if (this.#committed > position) return this.#committed;
      const advanced = await new Promise<boolean>((resolve) => {
        const wake = (): void => finish(true);
        const timer = setTimeout(() => finish(false), stallMs);
        const onAbort = (): void => finish(true);
        const finish = (woken: boolean): void => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          signal.removeEventListener('abort', onAbort);
          resolve(woken);
        };
        this.#waiters.add(wake);
        signal.addEventListener('abort', onAbort, { once: true });
      });
      if (!advanced)
        throw new FeedEndedError(`nothing of the relayed image was committed past ${position} for ${stallMs / 1000} s`, {
          imageId: this.imageId,
          position,
        });
    }
  }

  /** The recorded runs clipped to [from, to). */
  *runs(from: number, to: number): Iterable<FeedRun> {
    // Binary search for the run holding `from`: a sparse image may have many runs.
    let low = 0;
    let high = this.#runs.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.#runs[mid]!.offset <= from) low = mid;
      else high = mid - 1;
    }
    for (let i = low; i < this.#runs.length; i++) {
      const run = this.#runs[i]!;
      const start = Math.max(run.offset, from);
      const end = Math.min(run.offset + run.length, to);
      if (run.offset >= to) return;
      if (end > start) yield { offset: start, length: end - start, data: run.data };
    }
  }

  #wake(): void {
    for (const wake of [...this.#waiters]) wake();
  }
}
