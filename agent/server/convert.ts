/** Wire numbers (uint64 as bigint) to the numbers the disk code works with. */
import { AgentError } from '../errors.ts';

/** A uint64 that must fit a JavaScript integer (8 PiB: far beyond any disk). */
export function safeNumber(field: string, value: bigint): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER))
    throw new AgentError('invalid-argument', `${field} ${value} is out of range`, { field });
  return Number(value);
}
