/**
 * EventBus over core NATS. Events are bm.v1.Event in protobuf binary, so any
 * client with the .proto files can read them. Publishing never blocks a
 * request: NATS buffers while reconnecting, and `flush` is there for callers
 * that need to know an event left.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { EventSchema, type Event } from '../../proto/gen/bm/v1/event_pb.js';
import { BmError } from '../errors.ts';
import { uuidv7 } from '../nodes/index.ts';
import type { EventBus, EventSubscription, NodeEvent } from './bus.ts';
import { Subjects } from './subjects.ts';

export class EventBusError extends BmError {
  constructor(message: string, context: Record<string, string> = {}, cause?: unknown) {
    super('unavailable', message, context, { cause });
  }
}

export class NatsEventBus implements EventBus {
  readonly #nc: NatsConnection;
  readonly #controllerId: string;
  readonly #subjects: Subjects;

  private constructor(nc: NatsConnection, controllerId: string, subjects: Subjects) {
    this.#nc = nc;
    this.#controllerId = controllerId;
    this.#subjects = subjects;
  }

  static async connect(
    url: string,
    controllerId: string,
    options: { readonly subjects?: Subjects; readonly name?: string } = {},
  ): Promise<NatsEventBus> {
    try {
      const nc = await connect({
        servers: url
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== ''),
        name: options.name ?? `bm-controller ${controllerId}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        timeout: 5000,
      });
      return new NatsEventBus(nc, controllerId, options.subjects ?? new Subjects());
    } catch (err) {
      throw new EventBusError(`cannot connect to NATS at ${url}: ${err instanceof Error ? err.message : String(err)}`, { url }, err);
    }
  }

  get connection(): NatsConnection {
    return this.#nc;
  }

  publish(event: NodeEvent): void {
    const message = create(EventSchema, {
      id: uuidv7(),
      nodeUuid: event.nodeUuid,
      type: event.type,
      provisionState: event.provisionState ?? '',
      powerState: event.powerState ?? '',
      message: event.message ?? '',
      details: { ...event.details },
      controllerId: this.#controllerId,
      time: timestampFromDate(new Date()),
    });
    // An event without a node is about this controller (joined, left, found a peer dead).
    const subject = event.nodeUuid === '' ? this.#subjects.controllerEvents(this.#controllerId) : this.#subjects.nodeEvents(event.nodeUuid);
    this.#nc.publish(subject, toBinary(EventSchema, message));
  }

  /** Raw bytes on a subject of this cluster (heartbeats). */
  publishRaw(subject: string, data: Uint8Array): void {
    this.#nc.publish(subject, data);
  }

  get subjects(): Subjects {
    return this.#subjects;
  }

  subscribe(nodeUuid: string | null): EventSubscription {
    const sub = this.#nc.subscribe(nodeUuid === null ? this.#subjects.allEvents() : this.#subjects.nodeEvents(nodeUuid));
    async function* decode(): AsyncGenerator<Event> {
      for await (const msg of sub) {
        try {
          yield fromBinary(EventSchema, msg.data);
        } catch {
          // A foreign or corrupt message on our subject is not worth ending a watch for.
          continue;
        }
      }
    }
    const events = decode();
    return {
      [Symbol.asyncIterator]: () => events,
      close: () => sub.unsubscribe(),
    };
  }

  flush(): Promise<void> {
    return this.#nc.flush();
  }

  async close(): Promise<void> {
    await this.#nc.drain();
  }
}
