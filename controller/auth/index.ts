/** The public face of controller/auth/: what other folders import (scripts/check-imports.ts). */
export { type Caller, callerIfAny, callerOf, requireAdmin } from './caller.ts';
export { TokenDirectory, type TokenInfo } from './directory.ts';
export { adminAuth, bearerToken, callerAuth, UnauthenticatedError } from './interceptor.ts';
export { RefusalLog } from './refusal-log.ts';
export { hashToken, newToken, TokenSet } from './tokens.ts';
