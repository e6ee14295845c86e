/**
 * Serves protobuf-es v2 services on a grpc-js server. Handlers are plain async
 * functions and iterables; the adapter handles serialisation, backpressure,
 * cancellation, interceptors and the one error-to-status mapping.
 */
import type { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { DescMethod } from '@bufbuild/protobuf';
import { deserializer, serializer } from './codec.ts';
import { CallCancelledError, confirmEndOfRequests } from './end-of-stream.ts';
import { methodPath, type CallContext, type ServiceHandlers, type TypedService } from './types.ts';

/** Runs before every handler; throwing rejects the call (e.g. authentication). */
export type ServerInterceptor = (ctx: CallContext) => void | Promise<void>;

export interface StatusError {
  readonly code: grpc.status;
  readonly details: string;
  readonly metadata?: grpc.Metadata;
}

export interface ServeOptions {
  readonly interceptors?: readonly ServerInterceptor[];
  /** Maps a thrown error to a status. The default hides the message: unknown errors may carry internals. */
  readonly toStatus?: (err: unknown, ctx: CallContext) => StatusError;
  /**
   * The largest request message a method takes, checked on the raw bytes
   * before they are decoded (undefined: only the server's own limit).
   */
  readonly maxRequestBytes?: (method: DescMethod) => number | undefined;
  /** Told once per call when it ends: its status code and duration (audit lines, metrics). `request` is the unary/server-stream request. */
  readonly onCallEnd?: (ctx: CallContext, code: grpc.status, ms: number, request: unknown) => void;
}

/** A request message larger than its method takes; it was never decoded. */
export class RequestTooLargeError extends Error {
  readonly size: number;
  readonly limit: number;
  constructor(path: string, size: number, limit: number) {
    super(`request message of ${size} bytes is larger than ${path} takes (at most ${limit} bytes)`);
    this.name = 'RequestTooLargeError';
    this.size = size;
    this.limit = limit;
  }
}

/** What the deserializer hands on instead of a message that is over the limit. */
class OversizedRequest {
  readonly size: number;
  constructor(size: number) {
    this.size = size;
  }
}

function checkedRequest(message: unknown, path: string, limit: number | undefined): unknown {
  if (message instanceof OversizedRequest) throw new RequestTooLargeError(path, message.size, limit ?? 0);
  return message;
}

function defaultToStatus(): StatusError {
  return { code: grpc.status.INTERNAL, details: 'internal error' };
}

type AnyCall =
  | grpc.ServerUnaryCall<unknown, unknown>
  | grpc.ServerReadableStream<unknown, unknown>
  | grpc.ServerWritableStream<unknown, unknown>
  | grpc.ServerDuplexStream<unknown, unknown>;

function contextFor(call: AnyCall, method: DescMethod): CallContext {
  const controller = new AbortController();
  (call as EventEmitter).once('cancelled', () => controller.abort(new Error('call cancelled')));
  return { path: methodPath(method), method, metadata: call.metadata, peer: call.getPeer(), signal: controller.signal };
}

/** The call's requests; a cancel throws CallCancelledError instead of looking like the client's end (end-of-stream.ts). */
async function* readAll<T>(
  call: grpc.ServerReadableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
  ctx: CallContext,
  limit: number | undefined,
): AsyncIterable<T> {
  for await (const message of call) yield checkedRequest(message, ctx.path, limit) as T;
  await confirmEndOfRequests(call, ctx.signal, ctx.path);
}

/** Writes with backpressure; resolves false when the call was cancelled first. */
async function writeAll(
  call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
  messages: AsyncIterable<unknown>,
  signal: AbortSignal,
): Promise<void> {
  for await (const message of messages) {
    if (signal.aborted) return;
    if (!call.write(message)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          call.off('drain', done);
          signal.removeEventListener('abort', done);
          resolve();
        };
        call.on('drain', done);
        signal.addEventListener('abort', done);
      });
    }
  }
}

export function addService<S extends TypedService>(
  server: grpc.Server,
  service: S,
  handlers: ServiceHandlers<S>,
  options: ServeOptions = {},
): void {
  const interceptors = options.interceptors ?? [];
  const toStatus = options.toStatus ?? defaultToStatus;
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};

  const intercept = async (ctx: CallContext): Promise<void> => {
    for (const interceptor of interceptors) await interceptor(ctx);
  };
  const asServiceError = (err: unknown, ctx: CallContext): Partial<grpc.ServiceError> => {
    if (err instanceof RequestTooLargeError)
      return { code: grpc.status.RESOURCE_EXHAUSTED, details: err.message, metadata: new grpc.Metadata() };
    if (err instanceof CallCancelledError) return { code: grpc.status.CANCELLED, details: err.message, metadata: new grpc.Metadata() };
    const status = toStatus(err, ctx);
    return { code: status.code, details: status.details, metadata: status.metadata ?? new grpc.Metadata() };
  };
  const ended = (ctx: CallContext, started: number, code: grpc.status | undefined, request: unknown): void => {
    try {
      options.onCallEnd?.(ctx, code ?? grpc.status.UNKNOWN, performance.now() - started, request);
    } catch {
      // An audit or metrics hook never breaks a call.
    }
  };

  for (const key of Object.keys(service.method)) {
    const method = service.method[key]!;
    const handler = (handlers as Record<string, unknown>)[key] as unknown as (input: unknown, ctx: CallContext) => unknown;
    const path = methodPath(method);
    const limit = options.maxRequestBytes?.(method);
    const decode = deserializer(method.input);
    definition[method.name] = {
      path,
      requestStream: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
      responseStream: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
      requestSerialize: serializer(method.input) as (value: unknown) => Buffer,
      requestDeserialize:
        limit === undefined ? decode : (bytes: Buffer) => (bytes.length > limit ? new OversizedRequest(bytes.length) : decode(bytes)),
      responseSerialize: serializer(method.output) as (value: unknown) => Buffer,
      responseDeserialize: deserializer(method.output),
      originalName: key,
    };

    switch (method.methodKind) {
      case 'unary':
        implementation[method.name] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          const ctx = contextFor(call, method);
          const started = performance.now();
          (async () => {
            await intercept(ctx);
            return await (handler(checkedRequest(call.request, path, limit), ctx) as Promise<unknown>);
          })().then(
            (response) => {
              callback(null, response);
              ended(ctx, started, grpc.status.OK, call.request);
            },
            (err: unknown) => {
              const failure = asServiceError(err, ctx);
              callback(failure);
              ended(ctx, started, failure.code, call.request);
            },
          );
        }) as grpc.handleUnaryCall<unknown, unknown>;
        break;
      case 'client_streaming':
        implementation[method.name] = ((call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          const ctx = contextFor(call, method);
          const started = performance.now();
          (async () => {
            await intercept(ctx);
            return await (handler(readAll(call, ctx, limit), ctx) as Promise<unknown>);
          })().then(
            (response) => {
              callback(null, response);
              ended(ctx, started, grpc.status.OK, null);
            },
            (err: unknown) => {
              const failure = asServiceError(err, ctx);
              callback(failure);
              ended(ctx, started, failure.code, null);
            },
          );
        }) as grpc.handleClientStreamingCall<unknown, unknown>;
        break;
      case 'server_streaming':
        implementation[method.name] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
          const ctx = contextFor(call, method);
          const started = performance.now();
          (async () => {
            await intercept(ctx);
            await writeAll(call, handler(checkedRequest(call.request, path, limit), ctx) as AsyncIterable<unknown>, ctx.signal);
          })().then(
            () => {
              call.end();
              ended(ctx, started, grpc.status.OK, null);
            },
            (err: unknown) => {
              const failure = asServiceError(err, ctx);
              call.emit('error', failure);
              ended(ctx, started, failure.code, null);
            },
          );
        }) as grpc.handleServerStreamingCall<unknown, unknown>;
        break;
      case 'bidi_streaming':
        implementation[method.name] = ((call: grpc.ServerDuplexStream<unknown, unknown>) => {
          const ctx = contextFor(call, method);
          const started = performance.now();
          (async () => {
            await intercept(ctx);
            await writeAll(call, handler(readAll(call, ctx, limit), ctx) as AsyncIterable<unknown>, ctx.signal);
          })().then(
            () => {
              call.end();
              ended(ctx, started, grpc.status.OK, null);
            },
            (err: unknown) => {
              const failure = asServiceError(err, ctx);
              call.emit('error', failure);
              ended(ctx, started, failure.code, null);
            },
          );
        }) as grpc.handleBidiStreamingCall<unknown, unknown>;
        break;
    }
  }
  server.addService(definition, implementation);
}

/** Binds a grpc-js server and resolves with the bound port (useful with port 0). */
export function bindServer(server: grpc.Server, address: string, credentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port)));
  });
}

/** Stops accepting calls, lets running ones finish for up to graceMs, then cancels them. */
export function shutdownServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
