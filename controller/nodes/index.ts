/** The public face of controller/nodes/: what other folders import (scripts/check-imports.ts). */
export { DEFAULT_GROUP, DEFAULT_PM_PORT, DEFAULT_POWER_DRIVER } from './defaults.ts';
export { Enrollment } from './enrollment.ts';
export { normalizeMac } from './mac.ts';
export { macsOfNodes, MysqlNodeStore, toNode } from './mysql-store.ts';
export type { NodeStore, StateFields } from './store.ts';
export type { NodeRecord, PortRecord, ProvisionState } from './types.ts';
export { isUuid, uuidv7 } from './uuid.ts';
export { CPU_ARCHES, groupName, hasControlCharacter, MAX_PORTS_PER_NODE, POWER_DRIVERS, type PowerDriverName } from './validate.ts';
export { FencedNodeStore } from './fenced-store.ts';
export { type NodeOwner, StaleOwnerError } from './owner.ts';
