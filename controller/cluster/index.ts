/** The public face of controller/cluster/: what other folders import (scripts/check-imports.ts). */
export { HashRing } from './hash-ring.ts';
export { Membership } from './membership.ts';
