import { BmError, type ErrorContext } from '../errors.ts';

/** What the agent wrote does not hash to the image's raw content. */
export class DeployChecksumError extends BmError {
  readonly expected: string;
  readonly actual: string;
  constructor(nodeUuid: string, expected: string, actual: string) {
    super('failed-precondition', `node ${nodeUuid}: written image does not match: expected sha256 ${expected}, the agent reports ${actual}`, { node: nodeUuid, expected, actual });
    this.expected = expected;
    this.actual = actual;
  }
}

/** The stream broke and the retry budget is spent. */
export class DeployStreamError extends BmError {
  constructor(message: string, context: ErrorContext = {}, cause?: unknown) {
    super('unavailable', message, context, { cause });
  }
}
