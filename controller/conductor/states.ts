/**
 * The provision state machine: the one table the API, the conductor and the
 * docs read (docs/states.md is generated from it and checked by a test).
 * Verbs are what operators ask for; `done`, `fail`, `wait` and `resume` are
 * what the conductor reports as work progresses.
 */
import { BmError } from '../errors.ts';
import type { ProvisionState } from '../nodes/index.ts';

export type ProvisionEvent = 'manage' | 'provide' | 'inspect' | 'deploy' | 'undeploy' | 'done' | 'fail' | 'wait' | 'resume';

export interface Transition {
  readonly from: ProvisionState;
  readonly event: ProvisionEvent;
  readonly to: ProvisionState;
  /** Why this edge exists, for the generated docs. */
  readonly note: string;
}

export const TRANSITIONS: readonly Transition[] = [
  { from: 'enroll', event: 'manage', to: 'verifying', note: 'check the BMC credentials' },
  { from: 'verifying', event: 'done', to: 'manageable', note: 'the BMC answered with these credentials' },
  { from: 'verifying', event: 'fail', to: 'verify-failed', note: 'wrong credentials or unreachable BMC (last_error says which)' },
  { from: 'verify-failed', event: 'manage', to: 'verifying', note: 'way back: fix pm_* with node update, then manage again' },
  { from: 'manageable', event: 'manage', to: 'verifying', note: 're-check credentials after a change' },
  { from: 'manageable', event: 'provide', to: 'cleaning', note: 'erase the disk before offering the node' },
  { from: 'manageable', event: 'inspect', to: 'inspecting', note: 'boot the agent to read the hardware' },
  { from: 'inspecting', event: 'wait', to: 'inspect-wait', note: 'powered on, waiting for the agent' },
  { from: 'inspecting', event: 'fail', to: 'inspect-failed', note: 'could not power or boot the node' },
  { from: 'inspect-wait', event: 'done', to: 'manageable', note: 'inventory recorded' },
  { from: 'inspect-wait', event: 'fail', to: 'inspect-failed', note: 'the agent did not report in time' },
  { from: 'inspect-failed', event: 'inspect', to: 'inspecting', note: 'way back: retry inspection' },
  { from: 'inspect-failed', event: 'manage', to: 'verifying', note: 'way back: give up inspection, keep the node manageable' },
  { from: 'cleaning', event: 'done', to: 'available', note: 'disk erased' },
  { from: 'cleaning', event: 'fail', to: 'clean-failed', note: 'erase failed; the node goes into maintenance' },
  { from: 'clean-failed', event: 'manage', to: 'verifying', note: 'way back: after repair, verify and provide again' },
  { from: 'clean-failed', event: 'provide', to: 'cleaning', note: 'way back: retry cleaning' },
  { from: 'available', event: 'manage', to: 'verifying', note: 'take a free node out of the pool' },
  { from: 'available', event: 'deploy', to: 'deploying', note: 'an instance was scheduled here' },
  { from: 'deploying', event: 'wait', to: 'wait-callback', note: 'powered on into the ramdisk, waiting for the agent' },
  { from: 'wait-callback', event: 'resume', to: 'deploying', note: 'the agent called back; stream the image' },
  { from: 'wait-callback', event: 'fail', to: 'deploy-failed', note: 'the agent did not call back in time' },
  { from: 'deploying', event: 'done', to: 'active', note: 'image written, verified, node rebooted into it' },
  {
    from: 'deploying',
    event: 'fail',
    to: 'deploy-failed',
    note: 'stream, checksum or reboot failed (last_error has both digests on a mismatch)',
  },
  { from: 'deploy-failed', event: 'deploy', to: 'deploying', note: 'way back: retry the deploy' },
  { from: 'deploy-failed', event: 'undeploy', to: 'deleting', note: 'way back: give up; clean and return to the pool' },
  { from: 'active', event: 'undeploy', to: 'deleting', note: 'the instance was deleted' },
  { from: 'deleting', event: 'done', to: 'cleaning', note: 'powered off, config drive dropped' },
  { from: 'deleting', event: 'fail', to: 'clean-failed', note: 'could not tear down; needs an operator' },
];

/** States whose event `fail` records last_error (each has a way back in TRANSITIONS). */
export const FAILED_STATES: readonly ProvisionState[] = ['verify-failed', 'inspect-failed', 'deploy-failed', 'clean-failed'];

/** Events the conductor reports as its work progresses; a verb is what an operator asks for. */
export const CONDUCTOR_EVENTS: readonly ProvisionEvent[] = ['done', 'fail', 'wait', 'resume'];

/**
 * States the conductor leaves by itself (each has an edge on a conductor
 * event): a node in one is still working, so `bmctl ... --wait` waits on them.
 */
export const TRANSIENT_STATES: ReadonlySet<ProvisionState> = new Set(
  TRANSITIONS.filter((t) => CONDUCTOR_EVENTS.includes(t.event)).map((t) => t.from),
);

export function isTransientState(state: string): boolean {
  return (TRANSIENT_STATES as ReadonlySet<string>).has(state);
}

export class InvalidTransitionError extends BmError {
  constructor(nodeUuid: string, from: string, event: string) {
    const allowed = TRANSITIONS.filter((t) => t.from === from).map((t) => t.event);
    super(
      'failed-precondition',
      `node ${nodeUuid} is ${from}: cannot ${event} (possible: ${allowed.length > 0 ? [...new Set(allowed)].join(', ') : 'nothing'})`,
      { node: nodeUuid, state: from, event },
    );
  }
}

export function nextState(nodeUuid: string, from: string, event: ProvisionEvent): ProvisionState {
  const t = TRANSITIONS.find((x) => x.from === from && x.event === event);
  if (!t) throw new InvalidTransitionError(nodeUuid, from, event);
  return t.to;
}

/** The generated docs page: the table as Markdown and a Mermaid diagram. */
export function renderStatesMarkdown(): string {
  const lines = [
    '# Provision states',
    '',
    '<!-- generated from controller/conductor/states.ts by `npm run docs:states`; a test checks it is current -->',
    '',
    '```mermaid',
    'stateDiagram-v2',
    '  [*] --> enroll',
    ...TRANSITIONS.map((t) => `  ${t.from.replaceAll('-', '_')} --> ${t.to.replaceAll('-', '_')}: ${t.event}`),
    '```',
    '',
    '| from | event | to | why |',
    '| --- | --- | --- | --- |',
    ...TRANSITIONS.map((t) => `| ${t.from} | ${t.event} | ${t.to} | ${t.note} |`),
    '',
    `Failure states (${FAILED_STATES.join(', ')}) keep \`last_error\`; each has a "way back" edge above.`,
    '',
  ];
  return lines.join('\n');
}
