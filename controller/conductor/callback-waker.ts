/**
 * Wakes a wait for an agent's callback when the cluster hears of one: the
 * controller that handled the agent's first heartbeat of a boot publishes
 * `agent.called-back` on the node's subject (agents/registry.ts), so the
 * deploy waiting for it reads the node once instead of polling the database
 * every poll interval (in a boot storm those polls were a large share of the
 * statements). The wait still times out, so a lost event costs a slow poll.
 */
import { AGENT_CALLED_BACK } from '../agents/index.ts';

/** A node's events, as EventBus.subscribe gives them. */
export interface NodeEvents extends AsyncIterable<{ readonly type: string }> {
  close(): void;
}

export class CallbackWaker {
  readonly #sub: NodeEvents;
  #heard = false;
  #wake: (() => void) | null = null;

  constructor(sub: NodeEvents) {
    this.#sub = sub;
    void this.#listen();
  }

  async #listen(): Promise<void> {
    try {
      for await (const event of this.#sub) {
        if (event.type !== AGENT_CALLED_BACK) continue;
        this.#heard = true;
        this.#wake?.();
      }
    } catch {
      // A broken subscription only means the waits time out into polls.
    }
  }

  /** Resolves when a callback was heard since the last call, after `ms`, or once `signal` aborts. */
  next(ms: number, signal: AbortSignal): Promise<void> {
    if (this.#heard || signal.aborted) {
      this.#heard = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#wake = null;
        this.#heard = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }

  close(): void {
    this.#sub.close();
  }
}
