/** EventService.Watch: a client's live view of the NATS event stream. */
import type { ServiceHandlers } from '../../proto/rpc/index.ts';
import { EventService } from '../../proto/gen/bm/v1/event_pb.js';
import { callerOf } from '../auth/index.ts';
import { BmError, ValidationError } from '../errors.ts';
import type { EventBus } from '../events/index.ts';
import { isUuid } from '../nodes/index.ts';

/** Whether a project has an instance on the node (members may watch only those nodes). */
export type ProjectNodeCheck = (project: string, nodeUuid: string) => Promise<boolean>;

export function eventHandlers(bus: EventBus, projectHasNode: ProjectNodeCheck): ServiceHandlers<typeof EventService> {
  return {
    async *watch(req, ctx) {
      if (req.nodeUuid !== '' && !isUuid(req.nodeUuid)) throw new ValidationError('node_uuid', 'must be a node uuid');
      const caller = callerOf(ctx);
      if (caller.role !== 'admin' && (req.nodeUuid === '' || !(await projectHasNode(caller.project, req.nodeUuid)))) {
        throw new BmError('permission-denied', 'a member token watches only the nodes of its own instances (give node_uuid)', {
          project: caller.project,
        });
      }
      const sub = bus.subscribe(req.nodeUuid === '' ? null : req.nodeUuid);
      // The subscription must end when the client goes away, or it leaks.
      ctx.signal.addEventListener('abort', () => sub.close(), { once: true });
      try {
        for await (const event of sub) yield event;
      } finally {
        sub.close();
      }
    },
  };
}
