/**
 * A deploy and a delete as a tenant asks for them: `bmctl boot --wait` and
 * `bmctl instance delete --wait`, nothing else. The controller's conductor
 * does the rest (one-time PXE boot through the BMC, the agent's token in the
 * first iPXE script, the stream, the config drive, boot from disk; and on
 * delete power off, the ramdisk again, the erase). The phases are read from
 * the node's events (`bmctl watch`), as the controller published them.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { NodeEvents, SeenEvent } from './node-events.ts';

export type Phase = 'power-on' | 'agent-callback' | 'image-written' | 'rebooted' | 'active';
export type DeletePhase = 'powered-off' | 'ramdisk-power-on' | 'erased' | 'available';

/** What this needs of the e2e set-up (scenario.ts): bmctl against its controller, and a scratch directory. */
export interface Operator {
  bmctl(args: readonly string[], timeoutMs?: number): Promise<string>;
  readonly dir: string;
}

export interface BootRequest {
  readonly name: string;
  readonly flavor: string;
  readonly image: string;
  readonly userData: string;
}

/** The parts of `bmctl --json instance show` the tests read. */
export interface InstanceJson {
  readonly uuid: string;
  readonly name: string;
  readonly state: string;
  readonly nodeUuid: string;
  readonly address: string;
  readonly progress: number;
  readonly lastError: string;
}

const isPowerOn = (device: string, purpose?: string) => (e: SeenEvent) =>
  e.type === 'power.changed' &&
  e.details.target === 'on' &&
  e.details.bootDevice === device &&
  (purpose === undefined || e.details.purpose === purpose);

const DEPLOY_PHASES: Readonly<Record<Phase, (e: SeenEvent) => boolean>> = {
  'power-on': isPowerOn('pxe', 'deploy'),
  // wait-callback -> deploying: the agent of this boot heartbeated.
  'agent-callback': (e) => e.type === 'provision.changed' && e.details.event === 'resume',
  'image-written': (e) => e.type === 'deploy.written',
  rebooted: isPowerOn('disk'),
  active: (e) => e.type === 'provision.changed' && e.provisionState === 'active',
};

const DELETE_PHASES: Readonly<Record<DeletePhase, (e: SeenEvent) => boolean>> = {
  'powered-off': (e) => e.type === 'power.changed' && e.details.target === 'off',
  'ramdisk-power-on': isPowerOn('pxe', 'clean'),
  erased: (e) => e.type === 'clean.erased',
  available: (e) => e.type === 'provision.changed' && e.provisionState === 'available',
};

async function phasesOf<P extends string>(
  events: NodeEvents,
  wanted: Readonly<Record<P, (e: SeenEvent) => boolean>>,
  from: number,
): Promise<Record<P, number>> {
  const at = {} as Record<P, number>;
  // bmctl returned once the API said so; the watch may print the last events a moment later.
  for (const [phase, match] of Object.entries(wanted) as [P, (e: SeenEvent) => boolean][])
    at[phase] = (await events.waitFor(`the ${phase} event`, match, 15_000, from)).at;
  return at;
}

/** `bmctl boot --wait`; resolves with the ACTIVE instance and when each phase happened (performance.now() ms). */
export async function driveDeploy(
  op: Operator,
  events: NodeEvents,
  request: BootRequest,
): Promise<{ instance: InstanceJson; phases: Record<Phase, number> }> {
  const userDataFile = path.join(op.dir, `${request.name}.user-data`);
  await writeFile(userDataFile, request.userData);
  const from = events.count();
  const out = await op.bmctl(
    [
      '--json',
      'boot',
      '--flavor',
      request.flavor,
      '--image',
      request.image,
      '--user-data',
      userDataFile,
      '--wait',
      '--timeout',
      '900',
      request.name,
    ],
    960_000,
  );
  const instance = JSON.parse(out) as InstanceJson;
  if (instance.state !== 'ACTIVE')
    throw new Error(`instance ${request.name} ended ${instance.state}: ${instance.lastError}; events: ${events.describe(from)}`);
  return { instance, phases: await phasesOf(events, DEPLOY_PHASES, from) };
}

/** `bmctl instance delete --wait`, then the node's cleaning until it is available again. */
export async function driveUndeploy(op: Operator, events: NodeEvents, instanceName: string): Promise<Record<DeletePhase, number>> {
  const from = events.count();
  const out = JSON.parse(await op.bmctl(['--json', 'instance', 'delete', instanceName, '--wait', '--timeout', '300'], 360_000)) as {
    deleted?: string;
    state?: string;
    lastError?: string;
  };
  if (out.deleted !== instanceName)
    throw new Error(`instance ${instanceName} still exists after delete --wait: ${out.state ?? ''} ${out.lastError ?? ''}`);
  // The instance is gone once its machine is off; the node cleans after that.
  const end = await events.waitFor(
    'the node to finish cleaning',
    (e) => e.type === 'provision.changed' && (e.provisionState === 'available' || e.provisionState === 'clean-failed'),
    600_000,
    from,
  );
  if (end.provisionState !== 'available')
    throw new Error(`cleaning after the delete failed: ${end.message}; events: ${events.describe(from)}`);
  return phasesOf(events, DELETE_PHASES, from);
}
