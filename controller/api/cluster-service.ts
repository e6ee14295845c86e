/** ClusterService: the members, their groups, their last heartbeat, and how many nodes the hash ring gives each. */
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceHandlers } from '../../proto/rpc/index.ts';
import { ClusterService, ControllerInfoSchema } from '../../proto/gen/bm/v1/cluster_pb.js';
import { HashRing, type Membership } from '../cluster/index.ts';
import { BmError } from '../errors.ts';
import type { NodeStore } from '../nodes/index.ts';

export function clusterHandlers(
  view: { readonly membership: Membership | null },
  store: NodeStore,
  self: string,
): ServiceHandlers<typeof ClusterService> {
  return {
    async listControllers() {
      if (!view.membership) throw new BmError('unavailable', 'this controller is still starting; retry');
      const members = await view.membership.members();
      // Ownership per group: the ring of that group's live members.
      const rings = new Map<string, HashRing>();
      const owned = new Map<string, number>();
      let marker: string | null = null;
      do {
        const page = await store.listNodes({}, 1000, marker);
        for (const node of page.items) {
          let ring = rings.get(node.group);
          if (!ring) {
            ring = new HashRing(members.filter((m) => m.alive && m.groups.includes(node.group)).map((m) => m.id));
            rings.set(node.group, ring);
          }
          const owner = ring.owner(node.uuid);
          if (owner) owned.set(owner, (owned.get(owner) ?? 0) + 1);
        }
        marker = page.nextMarker;
      } while (marker);
      return {
        answeredBy: self,
        controllers: members.map((m) =>
          create(ControllerInfoSchema, {
            id: m.id,
            hostname: m.hostname,
            apiAddress: m.apiAddress,
            groups: [...m.groups],
            startedAt: timestampFromDate(m.startedAt),
            heartbeatAt: timestampFromDate(m.heartbeatAt),
            alive: m.alive,
            ownedNodes: owned.get(m.id) ?? 0,
          }),
        ),
      };
    },
  };
}
