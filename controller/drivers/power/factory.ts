/**
 * Chooses the power driver a node names. Drivers register here at controller
 * start; a node naming a driver this controller does not have gets an error
 * that says which drivers it does have.
 */
import { BmError } from '../../errors.ts';
import type { BmcTarget, PowerControl, PowerControlFactory } from './types.ts';

export function powerFactory(drivers: Readonly<Record<string, (target: BmcTarget) => PowerControl>>): PowerControlFactory {
  return (target) => {
    const make = drivers[target.driver];
    if (!make) {
      throw new BmError(
        'unsupported',
        `node ${target.nodeUuid} names power driver "${target.driver}", which this controller does not have (it has: ${Object.keys(drivers).join(', ')}); change it with \`bmctl node update --driver\``,
        { node: target.nodeUuid, driver: target.driver },
      );
    }
    return make(target);
  };
}
