/** The public face of controller/scheduler/: what other folders import (scripts/check-imports.ts). */
export type { BindClaim, ClaimWriter } from './batch-claim.ts';
export { NoValidNodeError } from './errors.ts';
export { type Claim, Scheduler, type UnbindClaim } from './scheduler.ts';
export type { ClaimHolder, Transaction } from './types.ts';
