/** The public face of controller/conductor/: what other folders import (scripts/check-imports.ts). */
export { AgentBoot } from './agent-boot.ts';
export { BmcAccess, bmcObserver } from './bmc-access.ts';
export { MysqlBootBackend } from './boot-backend.ts';
export { MysqlBootStateSource } from './boot-state.ts';
export { DeadReservations } from './dead-reservations.ts';
export { MysqlDeployCheckpoints } from './deploy-checkpoint.ts';
export { DeployStartQueue } from './deploy-starts.ts';
export { type DiagnoseDeps, diagnoseNode } from './diagnose.ts';
export { MysqlMetadataSource } from './metadata-source.ts';
export { MysqlPowerSyncStore } from './power-sync-store.ts';
export { PowerSync } from './power-sync.ts';
export { PowerConductor } from './power.ts';
export { Provisioner } from './provisioner.ts';
export { FAILED_STATES, isTransientState, nextState, renderStatesMarkdown } from './states.ts';
export { TaskManager } from './task.ts';
export { UnreleasedReservations } from './unreleased.ts';
export { forwardedActionHandler, LocalNodeActions, type NodeActions } from './node-actions.ts';
export { NodeRouter } from './node-router.ts';
