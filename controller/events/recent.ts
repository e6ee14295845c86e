/**
 * The last events of each node, kept in memory from the bus for `bmctl node
 * diagnose` (NATS core keeps no history). Bounded: a few events per node,
 * and the least recently touched nodes are forgotten first.
 */
import { timestampDate } from '@bufbuild/protobuf/wkt';
import type { EventBus, EventSubscription } from './bus.ts';

export interface RecentEvent {
  readonly time: string;
  readonly type: string;
  readonly provisionState: string;
  readonly powerState: string;
  readonly message: string;
  readonly details: Readonly<Record<string, string>>;
  readonly controller: string;
}

export class RecentEvents {
  readonly #perNode: number;
  readonly #maxNodes: number;
  readonly #events = new Map<string, RecentEvent[]>();
  #sub: EventSubscription | null = null;

  constructor(perNode = 30, maxNodes = 20_000) {
    this.#perNode = perNode;
    this.#maxNodes = maxNodes;
  }

  start(bus: EventBus): void {
    const sub = bus.subscribe(null);
    this.#sub = sub;
    void (async () => {
      for await (const e of sub) {
        const list = this.#events.get(e.nodeUuid) ?? [];
        this.#events.delete(e.nodeUuid);
        list.push({
          time: e.time ? timestampDate(e.time).toISOString() : '',
          type: e.type,
          provisionState: e.provisionState,
          powerState: e.powerState,
          message: e.message,
          details: { ...e.details },
          controller: e.controllerId,
        });
        if (list.length > this.#perNode) list.splice(0, list.length - this.#perNode);
        this.#events.set(e.nodeUuid, list);
        if (this.#events.size > this.#maxNodes) this.#events.delete(this.#events.keys().next().value!);
      }
    })().catch(() => undefined);
  }

  of(nodeUuid: string): readonly RecentEvent[] {
    return this.#events.get(nodeUuid) ?? [];
  }

  stop(): void {
    this.#sub?.close();
  }
}
