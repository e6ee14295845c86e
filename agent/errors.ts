/**
 * The agent's typed errors. The agent runs alone in the deploy ramdisk and
 * imports nothing from the controller, so it has its own root error. Each
 * error carries a stable `code` (the agent's gRPC layer maps codes to status
 * codes in one place) and the context an operator needs to act on it: the
 * device, the offsets, the sizes. Context never holds secrets.
 */
export type AgentErrorCode =
  | 'invalid-argument'
  | 'not-found'
  | 'failed-precondition'
  | 'out-of-range'
  | 'io'
  | 'unsupported'
  | 'unauthenticated'
  | 'busy'
  | 'superseded'
  | 'internal';

export type AgentErrorContext = Readonly<Record<string, string | number | boolean | undefined>>;

export class AgentError extends Error {
  readonly code: AgentErrorCode;
  readonly context: AgentErrorContext;

  constructor(code: AgentErrorCode, message: string, context: AgentErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}

/** A hardware file under /proc or /sys is missing or unreadable where it must exist. */
export class InventoryError extends AgentError {
  constructor(message: string, context: AgentErrorContext = {}, cause?: unknown) {
    super('failed-precondition', message, context, { cause });
  }
}

/** Root device hints that cannot be parsed (`size: ">= ten"`). */
export class InvalidHintError extends AgentError {
  readonly hint: string;
  constructor(hint: string, message: string, context: AgentErrorContext = {}) {
    super('invalid-argument', `root device hint ${hint}: ${message}`, { ...context, hint });
    this.hint = hint;
  }
}

/** No disk matches the root device hints at all. */
export class NoMatchingDiskError extends AgentError {
  constructor(message: string, context: AgentErrorContext = {}) {
    super('not-found', message, context);
  }
}

/**
 * The image does not fit the chosen (or only matching) disk. Raised before a
 * single byte is written, so the disk is untouched.
 */
export class DiskTooSmallError extends AgentError {
  readonly diskSize: number;
  readonly imageSize: number;
  constructor(device: string, diskSize: number, imageSize: number) {
    super('failed-precondition', `${device}: image of ${imageSize} bytes does not fit a disk of ${diskSize} bytes`, {
      device,
      diskSize,
      imageSize,
    });
    this.diskSize = diskSize;
    this.imageSize = imageSize;
  }
}

export type FrameProblem = 'out-of-order' | 'overlap' | 'gap' | 'past-image-end' | 'malformed' | 'after-finish';

/** A WriteImage frame that breaks the stream's rules; nothing of it was written. */
export class FrameError extends AgentError {
  readonly problem: FrameProblem;
  constructor(problem: FrameProblem, message: string, context: AgentErrorContext = {}) {
    super(problem === 'past-image-end' ? 'out-of-range' : 'invalid-argument', message, { ...context, problem });
    this.problem = problem;
  }
}

/** A target that cannot be opened, sized, written, synced or read back. */
export class TargetIoError extends AgentError {
  constructor(message: string, context: AgentErrorContext = {}, cause?: unknown) {
    super('io', message, context, { cause });
  }
}

/** The config drive is malformed or does not fit where it must go. */
export class ConfigDriveError extends AgentError {
  constructor(code: AgentErrorCode, message: string, context: AgentErrorContext = {}) {
    super(code, message, context);
  }
}

/** A call without the agent token, or with another one. Says nothing about which. */
export class AgentAuthError extends AgentError {
  constructor() {
    super('unauthenticated', 'missing or invalid agent token');
  }
}

/** Another operation holds the disk (an erase while an image is written, say). */
export class AgentBusyError extends AgentError {
  constructor(running: string, wanted: string) {
    super('busy', `cannot ${wanted}: ${running} is running`, { running, wanted });
  }
}

/**
 * A running operation was stopped because a new one of the same kind took
 * over (a resumed WriteImage whose old stream's peer is gone). It is the abort
 * reason of the old operation, so whatever it was awaiting rejects with it.
 */
export class OperationSupersededError extends AgentError {
  constructor(operation: string) {
    super('superseded', `superseded by a new ${operation}`, { operation });
  }
}
