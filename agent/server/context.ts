/**
 * What every handler of the agent's gRPC server shares: the configuration,
 * which disk is the target, what is known about its contents, and the one
 * operation that may hold the disk at a time.
 */
import { AgentBusyError, OperationSupersededError } from '../errors.ts';
import { selectRootDisk, type RootDeviceHints, type DigestMethod } from '../disk/index.ts';
import { readDisks } from '../inventory/index.ts';
import type { ImageFeed } from './image-feed.ts';
import { ReceivedBytes } from './received-bytes.ts';

export type DigestPolicy = DigestMethod | 'auto';

export interface AgentConfig {
  /** Root holding /proc and /sys ('/' on a machine, a fixture tree in tests). */
  readonly root: string;
  /** Write to this file or device instead of choosing a disk by hints. */
  readonly targetPath?: string;
  readonly rootHints?: RootDeviceHints;
  /** The target reads as zeros when the agent starts (a fresh sparse file, a new disk). */
  readonly targetZeroed: boolean;
  /** fdatasync interval when the sender does not ask for one. */
  readonly commitIntervalBytes: number;
  /**
   * read-back: hash what is on the target after the last fdatasync.
   * as-written: hash the frames as they pass (cheaper; trusts the write path).
   * auto: as-written for a stream that starts at 0, read-back after a resume.
   */
  readonly digest: DigestPolicy;
  /** argv run for in-band Reboot / PowerOff, after the reply has gone out. */
  readonly rebootCommand: readonly string[];
  readonly powerOffCommand: readonly string[];
  readonly log: (message: string, fields?: Readonly<Record<string, unknown>>) => void;
}

/** Bounds on the sender's commit interval, so a hostile value cannot make the agent sync per byte or never. */
export const MIN_COMMIT_INTERVAL = 1024 * 1024;
export const MAX_COMMIT_INTERVAL = 4 * 1024 * 1024 * 1024;

interface Running {
  readonly name: string;
  readonly abort: AbortController;
  readonly done: Promise<void>;
}

export class AgentContext {
  readonly config: AgentConfig;
  #chosenTarget: string | undefined;
  /** From this offset the target reads as zeros; undefined when unknown. */
  zeroFrom: number | undefined;
  /** Size of the last image written completely, for WriteConfigDrive. */
  lastImageSize: number | undefined;
  /** The image being (or last) written, as relays forward it (image-feed.ts); undefined when none can be. */
  #feed: ImageFeed | undefined;
  readonly #feedWaiters = new Set<() => void>();
  /** What the write-image streams of the current deploy delivered (received-bytes.ts). */
  readonly received = new ReceivedBytes();
  /**
   * How far the last write-image stream made its image durable, by image id:
   * a later stream of the same image may continue there. Any other operation
   * on the disk forgets it.
   */
  committedImage: { readonly imageKey: string; readonly offset: number } | undefined;
  #running: Running | undefined;

  constructor(config: AgentConfig) {
    this.config = config;
    this.zeroFrom = config.targetZeroed ? 0 : undefined;
  }

  /**
   * The target for an image of `imageSize` bytes: the configured path, or
   * the disk the root device hints pick (the smallest that fits). Once
   * chosen, later operations (ReadImage, Erase, the config drive) use it.
   */
  async targetFor(imageSize: number): Promise<string> {
    if (this.config.targetPath) return this.config.targetPath;
    if (this.#chosenTarget && imageSize === 0) return this.#chosenTarget;
    const disks = await readDisks(this.config.root);
    const disk = selectRootDisk(disks, imageSize, this.config.rootHints ?? {});
    this.#chosenTarget = disk.path;
    return disk.path;
  }

  get feed(): ImageFeed | undefined {
    return this.#feed;
  }

  set feed(feed: ImageFeed | undefined) {
    this.#feed = feed;
    for (const wake of [...this.#feedWaiters]) wake();
  }

  /** Ends the feed (relays reading it fail, their followers go back to the controller). */
  endFeed(reason: string): void {
    this.#feed?.end(reason);
    this.feed = undefined;
  }

  /**
   * The feed of image `imageId`, waiting up to `timeoutMs` for this agent's
   * own stream of it to start: the controller plans a follower behind this
   * agent as soon as this agent's deploy begins, and the follower's request
   * may arrive first. undefined when it did not start, or another image did.
   */
  async feedOf(imageId: string, imageSize: number, signal: AbortSignal, timeoutMs: number): Promise<ImageFeed | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const feed = this.#feed;
      if (feed && !feed.ended) return feed.imageId === imageId && feed.imageSize === imageSize ? feed : undefined;
      const left = deadline - Date.now();
      if (left <= 0 || signal.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.#feedWaiters.delete(done);
          signal.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.#feedWaiters.add(done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** Runs `fn` as the one operation on the disk; refuses while another runs. */
  async exclusive<T>(name: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.#running) throw new AgentBusyError(this.#running.name, name);
    return this.#run(name, fn);
  }

  /**
   * Like exclusive, but first stops a running operation of the same name: a
   * new WriteImage stream supersedes one whose connection broke without the
   * agent noticing (a resume must not wait for a dead peer's TCP timeout).
   */
  async superseding<T>(name: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const running = this.#running;
    if (running && running.name !== name) throw new AgentBusyError(running.name, name);
    if (running) {
      this.config.log('superseding a running operation', { operation: name });
      running.abort.abort(new OperationSupersededError(name));
      await running.done;
    }
    if (this.#running) throw new AgentBusyError(this.#running.name, name);
    return this.#run(name, fn);
  }

  async #run<T>(name: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const abort = new AbortController();
    let release!: () => void;
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    const running: Running = { name, abort, done };
    this.#running = running;
    if (name !== 'write-image') this.committedImage = undefined;
    try {
      return await fn(abort.signal);
    } finally {
      if (this.#running === running) this.#running = undefined;
      release();
    }
  }
}
