/** The public face of controller/agents/: what other folders import (scripts/check-imports.ts). */
export { AGENT_CALLED_BACK, AgentRegistry } from './registry.ts';
export { type AgentTokenStore, MysqlAgentTokens } from './tokens.ts';
