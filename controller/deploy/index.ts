/** The public face of controller/deploy/: what other folders import (scripts/check-imports.ts). */
export { type AgentConnection, connectAgent } from './agent-client.ts';
export { AgentLink, type AgentConnector } from './agent-link.ts';
export { deployImage, type DeployImageOptions } from './deploy.ts';
export { expectedDigestOf } from './digest.ts';
export { deployImageFanout } from './fanout-deploy.ts';
export { fanoutImageKey, FanoutPlanner } from './fanout-planner.ts';
