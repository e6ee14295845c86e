/**
 * How the agent makes itself known: Lookup by its MACs (the controller
 * answers with the node and what to do), or, when the controller does not
 * know the machine, Register with its inventory (auto-registration: the
 * node appears in `enroll`). Then heartbeats carrying the address of the
 * agent's gRPC server, so the conductor knows where to stream the image.
 *
 * Lookup and Heartbeat carry the per-operation agent token. A machine that
 * registered itself has none yet (it gets one when an operator's operation
 * boots it again), so it does not heartbeat.
 */
import { status } from '@grpc/grpc-js';
import { AgentRegistry } from '../proto/gen/bm/v1/agent_registry_pb.js';
import { connect, isServiceError, type RpcConnection } from '../proto/rpc/index.ts';
import type { WireInventory } from './server/inventory.ts';
import { ControllerCaMismatchError, credentialsFor, fetchPinnedCa, type ControllerTls } from './controller-tls.ts';

export type Log = (message: string, fields?: Readonly<Record<string, unknown>>) => void;

export interface RegistrationOptions {
  /** The controller's gRPC target, host:port. */
  readonly controller: string;
  /** Plaintext unless given; with a pinned CA, the controller is verified against it (controller-tls.ts). */
  readonly tls?: ControllerTls;
  readonly token?: string;
  readonly inventory: () => Promise<WireInventory>;
  /** host:port of this agent's gRPC server, as the controller should dial it. */
  readonly agentAddress: string;
  readonly heartbeatIntervalMs: number;
  /** Per call; a controller that does not answer counts as unavailable. */
  readonly callTimeoutMs?: number;
  /** Backoff between attempts while the controller is unreachable. */
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  readonly signal: AbortSignal;
  readonly log: Log;
  /** Called once the node is known, and after each heartbeat with the action. */
  readonly onAction?: (nodeUuid: string, action: string) => void;
}

export interface Identity {
  readonly nodeUuid: string;
  readonly action: string;
  /** How the controller came to know this machine. */
  readonly via: 'lookup' | 'register';
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/** Worth trying again later: the controller is down, busy or rate-limiting us. */
function transient(error: unknown): boolean {
  return (
    isServiceError(error) && [status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.RESOURCE_EXHAUSTED, status.ABORTED].includes(error.code)
  );
}

function describe(error: unknown): string {
  return isServiceError(error) ? `${status[error.code]}: ${error.details}` : error instanceof Error ? error.message : String(error);
}

async function identify(conn: RpcConnection, options: RegistrationOptions, timeoutMs: number): Promise<Identity> {
  const registry = conn.client(AgentRegistry);
  const inventory = await options.inventory();
  const macs = (inventory.nics ?? []).map((nic) => nic.mac ?? '').filter((mac) => mac !== '');
  try {
    const found = await registry.lookup({ macs }, { timeoutMs });
    return { nodeUuid: found.nodeUuid, action: found.action, via: 'lookup' };
  } catch (error) {
    // An unknown machine is told UNAUTHENTICATED, exactly as a wrong token (older controllers said
    // NOT_FOUND), so try to register: an enrolled machine is refused there the same way.
    const maybeUnknown = isServiceError(error) && (error.code === status.NOT_FOUND || error.code === status.UNAUTHENTICATED);
    if (!maybeUnknown) throw error;
  }
  // Register needs no token (a machine never seen has none); the controller ignores one sent along.
  const registered = await registry.register({ inventory }, { timeoutMs });
  return { nodeUuid: registered.nodeUuid, action: 'wait', via: 'register' };
}

/** Lookup or Register, retrying while the controller is unreachable; throws on a refusal. */
export async function identifyWithRetry(conn: RpcConnection, options: RegistrationOptions): Promise<Identity> {
  const timeoutMs = options.callTimeoutMs ?? 10_000;
  let delay = options.retryInitialMs ?? 500;
  for (;;) {
    options.signal.throwIfAborted();
    try {
      return await identify(conn, options, timeoutMs);
    } catch (error) {
      if (!transient(error)) throw error;
      options.log('controller unreachable; retrying', { controller: options.controller, error: describe(error), retryInMs: delay });
      await sleep(delay, options.signal);
      delay = Math.min(delay * 2, options.retryMaxMs ?? 30_000);
    }
  }
}

/**
 * Identifies the machine, then heartbeats until `signal` aborts. Resolves
 * when stopped, or after a refusal it cannot fix (logged, never thrown: the
 * agent's server keeps serving the controller either way).
 */
/** Fetches the pinned CA, retrying while the boot server is unreachable; a wrong fingerprint throws at once. */
async function pinnedCaWithRetry(tls: Extract<ControllerTls, { kind: 'pinned' }>, options: RegistrationOptions): Promise<Buffer> {
  let delay = options.retryInitialMs ?? 500;
  for (;;) {
    options.signal.throwIfAborted();
    try {
      return await fetchPinnedCa(tls, options.callTimeoutMs ?? 10_000, options.signal);
    } catch (error) {
      if (error instanceof ControllerCaMismatchError || options.signal.aborted) throw error;
      options.log('cannot fetch the controller CA; retrying', { url: tls.url, error: describe(error), retryInMs: delay });
      await sleep(delay, options.signal);
      delay = Math.min(delay * 2, options.retryMaxMs ?? 30_000);
    }
  }
}

export async function runRegistration(options: RegistrationOptions): Promise<Identity | undefined> {
  const tls = options.tls ?? { kind: 'plaintext' };
  let ca: Buffer | null = null;
  if (tls.kind === 'pinned') {
    try {
      ca = await pinnedCaWithRetry(tls, options);
    } catch (error) {
      // Talking to a controller we cannot verify would hand it our token: refuse instead.
      if (!options.signal.aborted)
        options.log('refusing the controller: its CA does not match bm.ca', { controller: options.controller, error: describe(error) });
      return undefined;
    }
    options.log('controller CA verified', { sha256: tls.sha256 });
  }
  const credentials = credentialsFor(tls, ca);
  const conn = connect(options.controller, {
    ...(credentials ? { credentials } : {}),
    ...(options.token ? { metadata: { authorization: `Bearer ${options.token}` } } : {}),
  });
  try {
    let identity: Identity;
    try {
      identity = await identifyWithRetry(conn, options);
    } catch (error) {
      if (!options.signal.aborted)
        options.log('the controller refused this agent', { controller: options.controller, error: describe(error) });
      return undefined;
    }
    options.log(identity.via === 'register' ? 'registered with the controller' : 'found by the controller', {
      node: identity.nodeUuid,
      action: identity.action,
    });
    options.onAction?.(identity.nodeUuid, identity.action);
    if (!options.token) {
      options.log('no agent token: not heartbeating until an operation boots this node with one', { node: identity.nodeUuid });
      return identity;
    }
    const registry = conn.client(AgentRegistry);
    let lastAction = identity.action;
    while (!options.signal.aborted) {
      try {
        const beat = await registry.heartbeat(
          { nodeUuid: identity.nodeUuid, agentAddress: options.agentAddress },
          { timeoutMs: options.callTimeoutMs ?? 10_000, signal: options.signal },
        );
        if (beat.action !== lastAction) options.log('controller asks for a new action', { node: identity.nodeUuid, action: beat.action });
        lastAction = beat.action;
        options.onAction?.(identity.nodeUuid, beat.action);
      } catch (error) {
        if (options.signal.aborted) break;
        options.log('heartbeat failed', { node: identity.nodeUuid, error: describe(error) });
      }
      await sleep(options.heartbeatIntervalMs, options.signal);
    }
    return identity;
  } finally {
    conn.close();
  }
}
