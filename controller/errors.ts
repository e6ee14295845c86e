/**
 * The root of the controller's typed errors. Each error carries a stable
 * `code` (the gRPC layer maps codes to statuses in one place) and the context
 * an operator needs (node, BMC address, field...). Context must never hold a
 * secret: callers pass identifiers, not credentials.
 */
export type ErrorCode =
  | 'invalid-argument'
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'conflict'
  | 'unauthenticated'
  | 'permission-denied'
  | 'unavailable'
  | 'timeout'
  | 'unsupported'
  | 'resource-exhausted'
  | 'internal';

export type ErrorContext = Readonly<Record<string, string | number | boolean | undefined>>;

export class BmError extends Error {
  readonly code: ErrorCode;
  readonly context: ErrorContext;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}

export class ValidationError extends BmError {
  readonly field: string;
  constructor(field: string, message: string, context: ErrorContext = {}) {
    super('invalid-argument', `${field}: ${message}`, { ...context, field });
    this.field = field;
  }
}

export class NotFoundError extends BmError {
  constructor(what: string, id: string) {
    super('not-found', `${what} ${id} not found`, { what, id });
  }
}

export class AlreadyExistsError extends BmError {
  constructor(message: string, context: ErrorContext = {}) {
    super('already-exists', message, context);
  }
}

export class ConflictError extends BmError {
  constructor(message: string, context: ErrorContext = {}) {
    super('conflict', message, context);
  }
}

export class UnsupportedError extends BmError {
  constructor(message: string, context: ErrorContext = {}) {
    super('unsupported', message, context);
  }
}

export class TimeoutError extends BmError {
  constructor(message: string, context: ErrorContext = {}) {
    super('timeout', message, context);
  }
}

/** A node already has as many ports as a node may have (nodes/validate.ts MAX_PORTS_PER_NODE). */
export class TooManyPortsError extends BmError {
  constructor(nodeUuid: string, limit: number) {
    super('failed-precondition', `node ${nodeUuid} already has ${limit} ports, the most a node may have; delete one first`, {
      node: nodeUuid,
      limit,
    });
  }
}
