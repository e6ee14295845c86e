/** The public face of controller/events/: what other folders import (scripts/check-imports.ts). */
export type { EventBus } from './bus.ts';
export { NatsEventBus } from './nats-bus.ts';
export { RecentEvents } from './recent.ts';
export { DEFAULT_SUBJECT_PREFIX, SUBJECT_PREFIX_PATTERN, Subjects } from './subjects.ts';
