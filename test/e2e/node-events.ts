/**
 * One node's events as an operator sees them: `bmctl --json watch --node
 * NAME` as a child process, one JSON event per line (the controller's NATS
 * events through EventService.Watch). The e2e test reads the phases of a
 * deploy from them; each event keeps the controller's publish time, put on
 * this process's performance.now() clock so it compares with the serial
 * console's times. The watch is live only (no replay), so start() returns
 * once an event it caused itself (a no-op `node update`) came through.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { stopChild } from '../boot/netns.ts';
import { bmctlPath, repoRoot } from '../../controller/lab/index.ts';

export interface SeenEvent {
  readonly type: string;
  readonly provisionState: string;
  readonly powerState: string;
  readonly message: string;
  readonly details: Readonly<Record<string, string>>;
  /** When the controller published it, on performance.now()'s clock (ms). */
  readonly at: number;
}

export type EventMatch = (e: SeenEvent) => boolean;

export class NodeEvents {
  readonly #child: ChildProcess;
  readonly #events: SeenEvent[] = [];
  #stderr = '';
  #partial = '';

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.stdout!.on('data', (d: Buffer) => this.#take(d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.#stderr += d.toString()));
  }

  /** Starts watching the node and returns once the watch is live. */
  static async start(env: Readonly<Record<string, string>>, node: string, poke: () => Promise<unknown>): Promise<NodeEvents> {
    const child = spawn(process.execPath, [bmctlPath, '--json', 'watch', '--node', node], {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const events = new NodeEvents(child);
    try {
      // Until the child subscribed, an event is lost: poke until one arrives.
      const deadline = Date.now() + 60_000;
      for (;;) {
        const from = events.count();
        await poke();
        const seen = await events.waitFor('the watch to go live', (e) => e.type === 'node.updated', 3000, from).catch(() => null);
        if (seen) return events;
        if (child.exitCode !== null) throw new Error(`bmctl watch exited with ${child.exitCode}: ${events.#stderr.trim()}`);
        if (Date.now() > deadline) throw new Error(`bmctl watch showed no event within 60 s: ${events.#stderr.trim()}`);
      }
    } catch (error) {
      await events.stop();
      throw error;
    }
  }

  #take(chunk: string): void {
    const lines = (this.#partial + chunk).split('\n');
    this.#partial = lines.pop() ?? '';
    const received = performance.now();
    for (const line of lines) {
      if (line.trim() === '') continue;
      const raw = JSON.parse(line) as {
        type?: string;
        provisionState?: string;
        powerState?: string;
        message?: string;
        details?: Record<string, string>;
        time?: string;
      };
      const published = raw.time ? Date.parse(raw.time) - performance.timeOrigin : Number.NaN;
      this.#events.push({
        type: raw.type ?? '',
        provisionState: raw.provisionState ?? '',
        powerState: raw.powerState ?? '',
        message: raw.message ?? '',
        details: raw.details ?? {},
        // Never later than its arrival: the two clocks are the same wall clock, read in two processes.
        at: Number.isFinite(published) ? Math.min(published, received) : received,
      });
    }
  }

  count(): number {
    return this.#events.length;
  }

  /** The events from index `from` on. */
  since(from = 0): readonly SeenEvent[] {
    return this.#events.slice(from);
  }

  /** The first event from index `from` on that matches. */
  find(match: EventMatch, from = 0): SeenEvent | undefined {
    return this.#events.slice(from).find(match);
  }

  async waitFor(what: string, match: EventMatch, ms: number, from = 0): Promise<SeenEvent> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.find(match, from);
      if (found) return found;
      if (this.#child.exitCode !== null)
        throw new Error(`waiting for ${what}: bmctl watch exited with ${this.#child.exitCode}: ${this.#stderr.trim()}`);
      if (Date.now() > deadline)
        throw new Error(`timed out after ${ms / 1000} s waiting for ${what}; events so far: ${this.describe(from)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** A one-line-per-event summary, for failure messages. */
  describe(from = 0): string {
    return this.#events
      .slice(from)
      .map(
        (e) =>
          `${e.type}${e.provisionState ? ` state=${e.provisionState}` : ''}${Object.keys(e.details).length ? ` ${JSON.stringify(e.details)}` : ''}`,
      )
      .join('; ');
  }

  async stop(): Promise<void> {
    await stopChild(this.#child, 'SIGTERM');
  }
}
