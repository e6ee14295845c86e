/** The public face of controller/api/: what other folders import (scripts/check-imports.ts). */
export { AGENT_REGISTRY_PREFIX, agentRegistryHandlers } from './agent-registry-service.ts';
export { clusterHandlers } from './cluster-service.ts';
export { describeDatabaseError, isDatabaseError, isDatabaseUnreachable } from './database-error.ts';
export { eventHandlers } from './event-service.ts';
export { flavorHandlers } from './flavor-service.ts';
export { healthHandlers, HealthState } from './health-service.ts';
export { imageHandlers } from './image-service.ts';
export { instanceHandlers } from './instance-service.ts';
export { requestLimits } from './limits.ts';
export { nodeHandlers } from './node-service.ts';
export { apiObserver } from './observe.ts';
export { portHandlers } from './port-service.ts';
export { CAUSE_HEADER, statusMapper } from './status.ts';
export { tokenHandlers } from './token-service.ts';
