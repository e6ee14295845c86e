import { BmError, type ErrorContext } from '../errors.ts';

export interface ReportedDigest {
  readonly algorithm: string;
  readonly hex: string;
}

/** What the agent wrote does not hash to the image's raw content. */
export class DeployChecksumError extends BmError {
  readonly expected: string;
  readonly actual: string;
  constructor(nodeUuid: string, expected: ReportedDigest, actual: ReportedDigest) {
    super(
      'failed-precondition',
      `node ${nodeUuid}: written image does not match: expected ${expected.algorithm} ${expected.hex}, the agent reports ${actual.algorithm} ${actual.hex || '(none)'}`,
      {
        node: nodeUuid,
        expected: expected.hex,
        actual: actual.hex,
        algorithm: expected.algorithm,
      },
    );
    this.expected = expected.hex;
    this.actual = actual.hex;
  }
}

/** The stream broke and the retry budget is spent. */
export class DeployStreamError extends BmError {
  constructor(message: string, context: ErrorContext = {}, cause?: unknown) {
    super('unavailable', message, context, { cause });
  }
}
