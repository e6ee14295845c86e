/** The public face of controller/instances/: what other folders import (scripts/check-imports.ts). */
export { metaDataJson, networkDataJson } from './cloud-init.ts';
export { InstanceManager } from './manager.ts';
export { InstanceStore } from './store.ts';
export type { InstanceRecord } from './types.ts';
export { LookupCache } from './lookup-cache.ts';
