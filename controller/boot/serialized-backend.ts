/**
 * A BootBackend decorator that runs one `allocateLease` at a time. A store
 * that picks "the next free address" (MAX(ip) + 1, the oldest expired row)
 * makes concurrent DISCOVERs of one controller race for the same candidate
 * and retry against each other; queueing them inside the controller removes
 * that self-contention, while races between controllers are still settled by
 * the store's unique key. Commits, lookups and releases stay concurrent.
 * The queue is bounded: in a storm, a DISCOVER that would wait behind
 * `maxQueued` others is refused at once (the server drops it and the client
 * retransmits) instead of being answered seconds later, when the client has
 * long moved on.
 */
import { BmError } from '../errors.ts';
import type { AllocateRequest, BootBackend, BootNode, Lease } from './backend.ts';

export class SerializedAllocations implements BootBackend {
  private readonly inner: BootBackend;
  private readonly maxQueued: number;
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;

  constructor(inner: BootBackend, maxQueued = 64) {
    this.inner = inner;
    this.maxQueued = maxQueued;
  }

  lookup(mac: string): Promise<BootNode | null> {
    return this.inner.lookup(mac);
  }

  allocateLease(request: AllocateRequest): Promise<string | null> {
    if (this.queued >= this.maxQueued) {
      return Promise.reject(new BmError('resource-exhausted', 'too many offers waiting for the lease store', { queued: this.queued }));
    }
    this.queued++;
    const result = this.tail.then(() => this.inner.allocateLease(request)).finally(() => this.queued--);
    this.tail = result.catch(() => undefined);
    return result;
  }

  commitLease(lease: Lease): Promise<Lease> {
    return this.inner.commitLease(lease);
  }

  releaseLease(mac: string, ip: string): Promise<void> {
    return this.inner.releaseLease(mac, ip);
  }

  declineLease(mac: string, ip: string): Promise<void> {
    return this.inner.declineLease(mac, ip);
  }
}
