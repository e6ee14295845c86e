/** The public face of controller/cluster/: what other folders import (scripts/check-imports.ts). */
export { HashRing } from './hash-ring.ts';
export { Membership } from './membership.ts';
export type { ForwardAction, ForwardArgs, ForwardResults } from './forward-codec.ts';
export { type ForwardClient, Forwarder, type ForwardHandler } from './forwarding.ts';
export { type OwnedNode, Ownership } from './ownership.ts';
export { Fence, FencedError, type FenceView } from './fence.ts';
