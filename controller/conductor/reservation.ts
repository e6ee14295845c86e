/**
 * "Take the node's lock, do the work, release it, even on error" as one
 * construct (after Ironic's task manager). The lock is a column set by an
 * atomic `UPDATE ... WHERE reservation IS NULL`, so it holds across every
 * controller sharing the database.
 */
import { BmError } from '../errors.ts';
import type { NodeStore } from '../nodes/index.ts';

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
}

export async function withNodeReservation<T>(
  store: NodeStore,
  nodeUuid: string,
  controllerId: string,
  work: () => Promise<T>,
  options: ReservationOptions = {},
): Promise<T> {
  const deadline = Date.now() + (options.waitMs ?? 0);
  while (!(await store.reserve(nodeUuid, controllerId))) {
    if (Date.now() >= deadline) {
      const node = await store.findNode(nodeUuid);
      if (!node) throw new BmError('not-found', `node ${nodeUuid} not found`, { node: nodeUuid });
      throw new NodeLockedError(nodeUuid, node.reservation);
    }
    await new Promise((r) => setTimeout(r, options.retryEveryMs ?? 100));
  }
  try {
    return await work();
  } finally {
    await store.release(nodeUuid, controllerId);
  }
}
