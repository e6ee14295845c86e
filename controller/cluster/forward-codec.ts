/**
 * The wire format of forwarded node actions (forwarding.ts): pure functions
 * from typed frames to bytes and back. JSON in UTF-8 with a version number,
 * so a controller of the next release can tell an older peer's frame from
 * garbage. A request names the action and the node (never a credential: the
 * owner reads BMC passwords from the database itself); a reply is either
 * `accepted` (the owner is there and waits for the caller's go), `working`
 * (it is at it) or the final `ok` or
 * `error`, whose code and message are what the owner's API would have said.
 */
import { BmError, type ErrorCode, type ErrorContext } from '../errors.ts';

export const FORWARD_VERSION = 1;

/** Each action is one NATS subject token (`<prefix>.rpc.<owner>.<action>`). */
export const FORWARD_ACTIONS = ['power-set', 'power-get', 'boot-device-set', 'boot-device-get', 'provision', 'deploy', 'undeploy'] as const;
export type ForwardAction = (typeof FORWARD_ACTIONS)[number];

/** What each action carries and answers. Ids are resolved uuids, so a rename meanwhile cannot retarget a forward. */
export interface ForwardArgs {
  'power-set': { readonly node: string; readonly target: string };
  'power-get': { readonly node: string };
  'boot-device-set': { readonly node: string; readonly device: string; readonly persistent: boolean; readonly uefi: boolean };
  'boot-device-get': { readonly node: string };
  provision: { readonly node: string; readonly verb: string };
  deploy: { readonly node: string; readonly instance: string };
  undeploy: { readonly instance: string };
}

export interface ForwardResults {
  'power-set': null;
  'power-get': { readonly powerState: string };
  'boot-device-set': { readonly device: string; readonly persistent: boolean; readonly uefi: boolean };
  'boot-device-get': { readonly device: string; readonly persistent: boolean; readonly uefi: boolean };
  provision: null;
  deploy: null;
  undeploy: null;
}

export interface ForwardRequest<A extends ForwardAction = ForwardAction> {
  readonly action: A;
  readonly args: ForwardArgs[A];
  /** The controller that received the API call (for the owner's log). */
  readonly from: string;
}

export interface RemoteErrorBody {
  readonly code: ErrorCode;
  readonly message: string;
  readonly context: ErrorContext;
  /** The owner's error class name, for the receiver's log. */
  readonly name: string;
}

export type ForwardReply =
  /** The owner will act once the caller says go on `confirm`: a caller that gave up meanwhile never does, so a late request runs nothing. */
  | { readonly kind: 'accepted'; readonly confirm: string }
  | { readonly kind: 'working' }
  | { readonly kind: 'ok'; readonly result: unknown }
  | { readonly kind: 'error'; readonly error: RemoteErrorBody };

/** A frame that is not ours or not well-formed. */
export class ForwardCodecError extends BmError {
  constructor(message: string) {
    super('invalid-argument', `forwarded frame: ${message}`);
  }
}

const ERROR_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'invalid-argument',
  'not-found',
  'already-exists',
  'failed-precondition',
  'conflict',
  'unauthenticated',
  'permission-denied',
  'unavailable',
  'timeout',
  'unsupported',
  'resource-exhausted',
  'internal',
]);

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

function parse(bytes: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    throw new ForwardCodecError('not UTF-8 JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ForwardCodecError('not an object');
  const frame = value as Record<string, unknown>;
  if (frame.v !== FORWARD_VERSION) throw new ForwardCodecError(`version ${String(frame.v)}, expected ${FORWARD_VERSION}`);
  return frame;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(args: Record<string, unknown>, key: string): string {
  const v = args[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > 255) throw new ForwardCodecError(`args.${key}: expected a non-empty string`);
  return v;
}

function flag(args: Record<string, unknown>, key: string): boolean {
  const v = args[key];
  if (typeof v !== 'boolean') throw new ForwardCodecError(`args.${key}: expected a boolean`);
  return v;
}

/** Only the fields each action defines survive decoding: nothing else reaches the owner's handlers. */
function checkArgs(action: ForwardAction, args: Record<string, unknown>): ForwardArgs[ForwardAction] {
  switch (action) {
    case 'power-set':
      return { node: str(args, 'node'), target: str(args, 'target') };
    case 'power-get':
    case 'boot-device-get':
      return { node: str(args, 'node') };
    case 'boot-device-set':
      return { node: str(args, 'node'), device: str(args, 'device'), persistent: flag(args, 'persistent'), uefi: flag(args, 'uefi') };
    case 'provision':
      return { node: str(args, 'node'), verb: str(args, 'verb') };
    case 'deploy':
      return { node: str(args, 'node'), instance: str(args, 'instance') };
    case 'undeploy':
      return { instance: str(args, 'instance') };
  }
}

export function isForwardAction(v: unknown): v is ForwardAction {
  return typeof v === 'string' && (FORWARD_ACTIONS as readonly string[]).includes(v);
}

export function encodeRequest(req: ForwardRequest): Uint8Array {
  return encoder.encode(JSON.stringify({ v: FORWARD_VERSION, ...req }));
}

export function decodeRequest(bytes: Uint8Array): ForwardRequest {
  const frame = parse(bytes);
  if (!isForwardAction(frame.action)) throw new ForwardCodecError(`unknown action ${JSON.stringify(frame.action)}`);
  if (!isRecord(frame.args)) throw new ForwardCodecError('args: expected an object');
  if (typeof frame.from !== 'string' || frame.from.length === 0) throw new ForwardCodecError('from: expected a controller id');
  return { action: frame.action, args: checkArgs(frame.action, frame.args), from: frame.from };
}

export function encodeReply(reply: ForwardReply): Uint8Array {
  return encoder.encode(JSON.stringify({ v: FORWARD_VERSION, ...reply }));
}

export function decodeReply(bytes: Uint8Array): ForwardReply {
  const frame = parse(bytes);
  switch (frame.kind) {
    case 'accepted':
      if (typeof frame.confirm !== 'string' || frame.confirm.length === 0)
        throw new ForwardCodecError('accepted: expected a confirm subject');
      return { kind: 'accepted', confirm: frame.confirm };
    case 'working':
      return { kind: 'working' };
    case 'ok':
      return { kind: 'ok', result: frame.result ?? null };
    case 'error': {
      const e = frame.error;
      if (!isRecord(e) || typeof e.code !== 'string' || !ERROR_CODES.has(e.code) || typeof e.message !== 'string')
        throw new ForwardCodecError('error: expected {code, message}');
      const context: Record<string, string | number | boolean> = {};
      if (isRecord(e.context))
        for (const [k, v] of Object.entries(e.context))
          if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') context[k] = v;
      return {
        kind: 'error',
        error: { code: e.code as ErrorCode, message: e.message, context, name: typeof e.name === 'string' ? e.name : 'BmError' },
      };
    }
    default:
      throw new ForwardCodecError(`unknown reply kind ${JSON.stringify(frame.kind)}`);
  }
}

/**
 * The owner's error as it goes back. A typed error keeps its code, message and context (context never holds a
 * secret, errors.ts); anything else is INTERNAL without detail, as the API would answer it (status.ts).
 */
export function errorBody(err: unknown): RemoteErrorBody {
  if (err instanceof BmError) return { code: err.code, message: err.message, context: err.context, name: err.name };
  return { code: 'internal', message: 'internal error', context: {}, name: err instanceof Error ? err.name : 'Error' };
}

/** An error the owner answered with: the same code and message the owner's own API would have given. */
export class RemoteError extends BmError {
  readonly remoteName: string;
  constructor(body: RemoteErrorBody, owner: string) {
    super(body.code, body.message, { ...body.context, owner });
    this.remoteName = body.name;
  }
}
