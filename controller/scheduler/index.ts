/** The public face of controller/scheduler/: what other folders import (scripts/check-imports.ts). */
export { Scheduler, type Transaction } from './scheduler.ts';
