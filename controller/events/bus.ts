/**
 * The seam for node events: the conductor and API publish, EventService.Watch
 * and other controllers subscribe. NATS is the real bus; subjects follow
 * DESIGN.md (`<prefix>.events.node.<uuid>`, see subjects.ts).
 */
import type { Event } from '../../proto/gen/bm/v1/event_pb.js';

export interface NodeEvent {
  /** '' for an event about the publishing controller itself (controller.joined, controller.dead, ...). */
  readonly nodeUuid: string;
  /** node.created, node.updated, node.deleted, port.created, port.deleted, ... */
  readonly type: string;
  readonly provisionState?: string;
  readonly powerState?: string;
  readonly message?: string;
  /** Never a secret: callers pass identifiers and states only. */
  readonly details?: Readonly<Record<string, string>>;
}

export interface EventSubscription extends AsyncIterable<Event> {
  close(): void;
}

export interface EventBus {
  publish(event: NodeEvent): void;
  /** Events of one node, or every event of the cluster (nodes' and controllers') when nodeUuid is null. */
  subscribe(nodeUuid: string | null): EventSubscription;
  /** Resolves once everything published so far has reached the server. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
