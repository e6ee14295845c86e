/** An EventBus that keeps what was published, for fast unit tests of code that publishes. */
import type { Event } from '../../proto/gen/bm/v1/event_pb.js';
import type { EventBus, EventSubscription, NodeEvent } from './bus.ts';

export class MemoryEventBus implements EventBus {
  readonly published: NodeEvent[] = [];

  publish(event: NodeEvent): void {
    this.published.push(event);
  }

  subscribe(): EventSubscription {
    return {
      close() {},
      async *[Symbol.asyncIterator](): AsyncIterator<Event> {},
    };
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}
}
