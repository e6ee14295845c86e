/**
 * Who may write a node while a task runs on it: the controller holding its
 * reservation, at the owner epoch it reserved at. The epoch is bumped every
 * time the reservation is taken or broken, so an owner that was fenced (or
 * frozen) and whose node a peer took over meanwhile carries an old epoch,
 * and its late writes match no row.
 */
import { BmError } from '../errors.ts';

export interface NodeOwner {
  readonly controllerId: string;
  readonly epoch: number;
}

/** A write refused because this controller no longer owns the node at its epoch: its task ends without touching the node. */
export class StaleOwnerError extends BmError {
  constructor(nodeUuid: string, owner: NodeOwner, holder: string | null, currentEpoch: number) {
    super(
      'conflict',
      `node ${nodeUuid} was taken over (now held by ${holder ?? 'nobody'} at owner epoch ${currentEpoch}); controller ${owner.controllerId}'s write at epoch ${owner.epoch} refused`,
      { node: nodeUuid, controller: owner.controllerId, epoch: owner.epoch, currentEpoch, holder: holder ?? '' },
    );
  }
}
