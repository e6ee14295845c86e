/**
 * How a BMC conversation fails, as an operator needs to tell apart: wrong
 * credentials (fix the node), no answer (check the network or the BMC), or an
 * answer we could not use. Each names the node and the BMC, never the password.
 */
import { BmError, type ErrorContext } from '../../errors.ts';

export interface BmcContext extends ErrorContext {
  readonly node?: string;
  readonly bmc: string;
}

export class BmcAuthError extends BmError {
  constructor(context: BmcContext, detail: string) {
    super(
      'permission-denied',
      `BMC ${context.bmc}${context.node ? ` of node ${context.node}` : ''} refused the credentials (${detail})`,
      context,
    );
  }
}

export class BmcTimeoutError extends BmError {
  constructor(context: BmcContext, detail: string) {
    super('timeout', `BMC ${context.bmc}${context.node ? ` of node ${context.node}` : ''} did not answer (${detail})`, context);
  }
}

export class BmcCommandError extends BmError {
  constructor(context: BmcContext, detail: string) {
    super('unavailable', `BMC ${context.bmc}${context.node ? ` of node ${context.node}` : ''}: ${detail}`, context);
  }
}
