/**
 * Types shared by the grpc-js adapter's server and client halves: handler and
 * client method shapes derived from protobuf-es v2 service descriptors, so a
 * service is implemented and called with full types and no per-message code.
 */
import type { DescMessage, DescMethod, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';

/** A protobuf-es service descriptor whose methods carry their kinds and messages. */
export interface TypedService {
  readonly typeName: string;
  readonly method: { readonly [name: string]: DescMethod };
}

type MethodShape = Pick<DescMethod, 'input' | 'output' | 'methodKind'>;

export type In<M extends { input: DescMessage }> = MessageShape<M['input']>;
export type Out<M extends { output: DescMessage }> = MessageShape<M['output']>;
export type OutInit<M extends { output: DescMessage }> = MessageInitShape<M['output']>;
export type InInit<M extends { input: DescMessage }> = MessageInitShape<M['input']>;

/** What a handler knows about the call it serves. */
export interface CallContext {
  /** The full method path, e.g. /bm.v1.NodeService/CreateNode. */
  readonly path: string;
  readonly method: DescMethod;
  readonly metadata: grpc.Metadata;
  readonly peer: string;
  /** Aborted when the client cancels or the deadline passes. */
  readonly signal: AbortSignal;
}

export type UnaryHandler<M extends MethodShape> = (request: In<M>, ctx: CallContext) => Promise<OutInit<M>> | OutInit<M>;
export type ServerStreamHandler<M extends MethodShape> = (request: In<M>, ctx: CallContext) => AsyncIterable<OutInit<M>>;
export type ClientStreamHandler<M extends MethodShape> = (requests: AsyncIterable<In<M>>, ctx: CallContext) => Promise<OutInit<M>>;
export type BidiHandler<M extends MethodShape> = (requests: AsyncIterable<In<M>>, ctx: CallContext) => AsyncIterable<OutInit<M>>;

export type HandlerFor<M extends MethodShape> = M['methodKind'] extends 'unary'
  ? UnaryHandler<M>
  : M['methodKind'] extends 'server_streaming'
    ? ServerStreamHandler<M>
    : M['methodKind'] extends 'client_streaming'
      ? ClientStreamHandler<M>
      : BidiHandler<M>;

export type ServiceHandlers<S extends TypedService> = { readonly [K in keyof S['method']]: HandlerFor<S['method'][K]> };

export interface CallOptions {
  /** Extra request metadata (merged over the client's defaults). */
  readonly metadata?: Readonly<Record<string, string>>;
  /** A deadline as a Date, or milliseconds from now. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export type ClientMethodFor<M extends MethodShape> = M['methodKind'] extends 'unary'
  ? (request: InInit<M>, options?: CallOptions) => Promise<Out<M>>
  : M['methodKind'] extends 'server_streaming'
    ? (request: InInit<M>, options?: CallOptions) => AsyncIterable<Out<M>>
    : M['methodKind'] extends 'client_streaming'
      ? (requests: AsyncIterable<InInit<M>> | Iterable<InInit<M>>, options?: CallOptions) => Promise<Out<M>>
      : (requests: AsyncIterable<InInit<M>> | Iterable<InInit<M>>, options?: CallOptions) => AsyncIterable<Out<M>>;

export type ServiceClient<S extends TypedService> = { readonly [K in keyof S['method']]: ClientMethodFor<S['method'][K]> };

/** The full gRPC path of a method: /package.Service/Method. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}
