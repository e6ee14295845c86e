/**
 * "Take the node's lock, do the work, release it, even on error" as one
 * construct (after Ironic's task manager). The lock is a column set by an
 * atomic `UPDATE ... WHERE reservation IS NULL`, so it holds across every
 * controller sharing the database.
 */
import { FencedError } from '../cluster/index.ts';
import { BmError } from '../errors.ts';
import type { NodeStore } from '../nodes/index.ts';
import type { UnreleasedReservations } from './unreleased.ts';

export class NodeLockedError extends BmError {
  constructor(nodeUuid: string, holder: string | null) {
    super(
      'conflict',
      `node ${nodeUuid} is locked by ${holder ? `controller ${holder}` : 'another controller'}; retry when its current task ends`,
      { node: nodeUuid, holder: holder ?? '' },
    );
  }
}

export interface ReservationOptions {
  /** How long to keep trying when another task holds the lock (0: fail at once). */
  readonly waitMs?: number;
  readonly retryEveryMs?: number;
  /** Where a release the fence refused waits for the fence to open (absent: the reservation stays, as a dead controller's would). */
  readonly unreleased?: UnreleasedReservations;
}

export async function withNodeReservation<T>(
  store: NodeStore,
  nodeUuid: string,
  controllerId: string,
  work: () => Promise<T>,
  options: ReservationOptions = {},
): Promise<T> {
  const deadline = Date.now() + (options.waitMs ?? 0);
  let epoch: number | null;
  while ((epoch = await store.reserve(nodeUuid, controllerId)) === null) {
    if (Date.now() >= deadline) {
      const node = await store.findNode(nodeUuid);
      if (!node) throw new BmError('not-found', `node ${nodeUuid} not found`, { node: nodeUuid });
      throw new NodeLockedError(nodeUuid, node.reservation);
    }
    await new Promise((r) => setTimeout(r, options.retryEveryMs ?? 100));
  }
  const held = epoch;
  try {
    return await work();
  } finally {
    // Under the epoch taken: a retry once unfenced must not free a reservation taken again since.
    await store.release(nodeUuid, controllerId, held).catch((err: unknown) => {
      if (!(err instanceof FencedError) || !options.unreleased) throw err;
      options.unreleased.add(nodeUuid, held);
    });
  }
}
