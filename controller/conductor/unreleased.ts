/**
 * Reservations a task or a power verb of ours could not release because the
 * fence was closed when it ended (the fenced store refuses every write).
 * Left alone they would lock a node at rest (active, available) under our
 * name for good: peers break only a dead controller's reservations, and the
 * recovery sweep looks only at nodes left mid-task. Once we are unfenced the
 * sweep releases them here, each under the epoch it was taken with, so one a
 * peer took over meanwhile, or a later task of ours took again, is left as it is.
 */
import type { Logger } from 'pino';
import type { NodeStore } from '../nodes/index.ts';

export class UnreleasedReservations {
  /** Node uuid → the owner epoch of the reservation we still hold. */
  readonly #held = new Map<string, number>();

  add(nodeUuid: string, epoch: number): void {
    this.#held.set(nodeUuid, epoch);
  }

  get size(): number {
    return this.#held.size;
  }

  /** Releases each one it can; what fails (fenced again, the database away) stays for the next sweep. Returns how many went. */
  async releaseAll(store: NodeStore, controllerId: string, log: Logger): Promise<number> {
    let released = 0;
    for (const [nodeUuid, epoch] of [...this.#held]) {
      try {
        await store.release(nodeUuid, controllerId, epoch);
        // A later add() for the same node (a newer reservation, also left) must survive this one's release.
        if (this.#held.get(nodeUuid) === epoch) this.#held.delete(nodeUuid);
        released++;
      } catch (err) {
        log.warn({ err, node: nodeUuid, epoch }, 'could not release a reservation left while fenced; the next sweep tries again');
      }
    }
    if (released > 0) log.info({ released }, 'released reservations left by tasks that ended while this controller was fenced');
    return released;
  }
}
