/**
 * Every NATS subject the controller uses, built from one configurable prefix
 * (`[nats] prefix`, default `bm`), so two clusters, or a lab and a test run,
 * can share one NATS server without seeing each other's traffic. Build a new
 * subject here, never as a literal elsewhere.
 */
import { ValidationError } from '../errors.ts';

export const DEFAULT_SUBJECT_PREFIX = 'bm';

/** One or more NATS subject tokens: no wildcards, no whitespace, no empty token. */
export const SUBJECT_PREFIX_PATTERN = /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,3}$/;

export class Subjects {
  readonly prefix: string;

  constructor(prefix: string = DEFAULT_SUBJECT_PREFIX) {
    if (!SUBJECT_PREFIX_PATTERN.test(prefix))
      throw new ValidationError('nats.prefix', 'expected NATS subject tokens (letters, digits, "_" or "-") joined by "."');
    this.prefix = prefix;
  }

  /** Every event of this cluster, nodes' and controllers' (a watch without a node filter). */
  allEvents(): string {
    return `${this.prefix}.events.>`;
  }

  /** `<prefix>.events.controller.<id>`: a controller joined, left or was found dead. */
  controllerEvents(controllerId: string): string {
    return `${this.prefix}.events.controller.${controllerId}`;
  }

  /** `<prefix>.controllers.<id>.heartbeat` (DESIGN.md, NATS subjects). */
  controllerHeartbeat(controllerId: string): string {
    return `${this.prefix}.controllers.${controllerId}.heartbeat`;
  }

  /** `<prefix>.rpc.<ownerId>.<action>`: a node action forwarded to the node's owner (cluster/forwarding.ts). */
  rpc(ownerId: string, action: string): string {
    return `${this.prefix}.rpc.${ownerId}.${action}`;
  }

  /** Every action forwarded to this controller (one token per action). */
  rpcOf(controllerId: string): string {
    return `${this.prefix}.rpc.${controllerId}.*`;
  }

  /** `<prefix>.events.node.<uuid>`; every node's events (a wildcard) for null. */
  nodeEvents(nodeUuid: string | null): string {
    return `${this.prefix}.events.node.${nodeUuid ?? '*'}`;
  }
}
