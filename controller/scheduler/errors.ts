import { BmError } from '../errors.ts';

/** RESOURCE_EXHAUSTED: the message says which filter removed how many candidates. */
export class NoValidNodeError extends BmError {
  constructor(explanation: string) {
    super('resource-exhausted', explanation);
  }
}
