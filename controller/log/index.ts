/** The public face of controller/log/: what other folders import (scripts/check-imports.ts). */
export { createLogger, REDACT_PATHS } from './logger.ts';
