/**
 * Calls protobuf-es v2 services over grpc-js with typed methods: promises for
 * unary and client-streaming calls, async iterables for streamed responses,
 * backpressure on streamed requests, and AbortSignal cancellation. One
 * RpcConnection is one HTTP/2 connection, whatever mix of calls runs on it.
 */
import * as grpc from '@grpc/grpc-js';
import type { DescMethod } from '@bufbuild/protobuf';
import { deserializer, serializer, type EncodedMessage } from './codec.ts';
import { duplexCall, type DuplexCall } from './duplex.ts';
import { IN_PLACE_FRAMING_CHANNEL_OPTIONS, installInPlaceFraming } from './in-place-framing.ts';
import { defaultCredentials } from './trusted-servers.ts';
import { methodPath, type CallOptions, type InInit, type Out, type ServiceClient, type TypedService } from './types.ts';

export interface ConnectOptions {
  /** Metadata sent with every call, e.g. { authorization: 'Bearer ...' }. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Default: TLS for a server registered with trustServer(), plaintext otherwise. */
  readonly credentials?: grpc.ChannelCredentials;
  /**
   * The HTTP/2 receive window this side advertises, per stream and for the
   * connection (what the peer may send before we read); Node's default is
   * 64 KiB. The window for what we send is the server's (bindServerWithReceiveWindow).
   */
  readonly receiveWindowBytes?: number;
  /** Further grpc-js channel options, e.g. message size limits and keepalive. */
  readonly channelOptions?: grpc.ChannelOptions;
  /**
   * Send encoded messages that have room in front (codec.ts encoded() with
   * headroom) without grpc-js's copy (in-place-framing.ts). The channel then
   * runs without retries, and a write's callback says the bytes were written.
   */
  readonly inPlaceFraming?: boolean;
}

/** A bidi method of a protobuf-es service descriptor. */
export type BidiMethod = DescMethod & { readonly methodKind: 'bidi_streaming' };

export interface RpcConnection {
  client<S extends TypedService>(service: S): ServiceClient<S>;
  /**
   * Opens a bidi call its caller drives (duplex.ts): writes with feedback,
   * already-encoded requests (codec.ts encoded()) passed through as they are.
   */
  duplex<M extends BidiMethod>(method: M, call?: CallOptions): DuplexCall<InInit<M> | EncodedMessage<M['input']>, Out<M>>;
  /** Resolves once the channel is connected, rejects after timeoutMs. */
  waitForReady(timeoutMs: number): Promise<void>;
  /**
   * Whether the HTTP/2 connection is up now. After a failed call, false says the connection
   * itself broke (closed, reset, keepalive timed out), not only the call.
   */
  connected(): boolean;
  close(): void;
}

type WritableCall = grpc.ClientWritableStream<unknown> | grpc.ClientDuplexStream<unknown, unknown>;

async function pump(call: WritableCall, requests: AsyncIterable<unknown> | Iterable<unknown>): Promise<void> {
  try {
    for await (const request of requests) {
      if (!call.write(request)) await new Promise<void>((resolve) => call.once('drain', resolve));
    }
    call.end();
  } catch (err) {
    // A failing request source must not leave a half-open stream on the server.
    call.cancel();
    throw err;
  }
}

async function* responses<T>(
  call: grpc.ClientReadableStream<unknown> | grpc.ClientDuplexStream<unknown, unknown>,
  pumping?: Promise<void>,
): AsyncIterable<T> {
  let pumpError: unknown;
  pumping?.catch((err: unknown) => {
    pumpError = err;
  });
  try {
    for await (const message of call) yield message as T;
  } catch (err) {
    throw pumpError ?? err;
  } finally {
    // Leaving the loop early (break, throw) cancels the call instead of leaking it.
    call.cancel();
  }
  if (pumpError !== undefined) throw pumpError;
}

export function connect(address: string, options: ConnectOptions = {}): RpcConnection {
  const channelOptions: grpc.ChannelOptions = {
    // grpc-js otherwise shares a connection between channels with equal options and credentials
    // process-wide, so close() would not close it and two connections could silently become one
    // (or, once their options differ, one become two).
    'grpc.use_local_subchannel_pool': 1,
    ...(options.receiveWindowBytes !== undefined ? { 'grpc-node.flow_control_window': options.receiveWindowBytes } : {}),
    ...options.channelOptions,
    ...(options.inPlaceFraming ? IN_PLACE_FRAMING_CHANNEL_OPTIONS : {}),
  };
  if (options.inPlaceFraming) installInPlaceFraming();
  const inPlace = options.inPlaceFraming ?? false;
  const channel = new grpc.Client(address, options.credentials ?? defaultCredentials(address), channelOptions);

  const metadataFor = (call?: CallOptions): grpc.Metadata => {
    const md = new grpc.Metadata();
    for (const [key, value] of Object.entries({ ...options.metadata, ...call?.metadata })) md.set(key, value);
    return md;
  };
  const callOptionsFor = (call?: CallOptions): grpc.CallOptions =>
    call?.timeoutMs !== undefined ? { deadline: Date.now() + call.timeoutMs } : {};
  const bindSignal = (call: grpc.Call, signal?: AbortSignal): void => {
    if (!signal) return;
    if (signal.aborted) call.cancel();
    else signal.addEventListener('abort', () => call.cancel(), { once: true });
  };

  const makeMethod = (method: DescMethod): unknown => {
    const path = methodPath(method);
    const serialize = serializer(method.input, inPlace) as (value: unknown) => Buffer;
    const deserialize = deserializer(method.output);
    switch (method.methodKind) {
      case 'unary':
        return (request: unknown, call?: CallOptions) =>
          new Promise((resolve, reject) => {
            const c = channel.makeUnaryRequest(
              path,
              serialize,
              deserialize,
              request,
              metadataFor(call),
              callOptionsFor(call),
              (err, value) => (err ? reject(err) : resolve(value)),
            );
            bindSignal(c, call?.signal);
          });
      case 'server_streaming':
        return (request: unknown, call?: CallOptions) => {
          const c = channel.makeServerStreamRequest(path, serialize, deserialize, request, metadataFor(call), callOptionsFor(call));
          bindSignal(c, call?.signal);
          return responses(c);
        };
      case 'client_streaming':
        return (requests: AsyncIterable<unknown> | Iterable<unknown>, call?: CallOptions) =>
          new Promise((resolve, reject) => {
            const c = channel.makeClientStreamRequest(
              path,
              serialize,
              deserialize,
              metadataFor(call),
              callOptionsFor(call),
              (err, value) => (err ? reject(err) : resolve(value)),
            );
            bindSignal(c, call?.signal);
            pump(c, requests).catch(reject);
          });
      case 'bidi_streaming':
        return (requests: AsyncIterable<unknown> | Iterable<unknown>, call?: CallOptions) => {
          const c = channel.makeBidiStreamRequest(path, serialize, deserialize, metadataFor(call), callOptionsFor(call));
          bindSignal(c, call?.signal);
          return responses(c, pump(c, requests));
        };
    }
  };

  return {
    client<S extends TypedService>(service: S): ServiceClient<S> {
      const methods: Record<string, unknown> = {};
      for (const key of Object.keys(service.method)) {
        methods[key] = makeMethod(service.method[key]!);
      }
      return methods as ServiceClient<S>;
    },
    duplex<M extends BidiMethod>(method: M, call?: CallOptions): DuplexCall<InInit<M> | EncodedMessage<M['input']>, Out<M>> {
      const c = channel.makeBidiStreamRequest(
        methodPath(method),
        serializer(method.input, inPlace) as (value: InInit<M> | EncodedMessage<M['input']>) => Buffer,
        deserializer(method.output) as (bytes: Buffer) => Out<M>,
        metadataFor(call),
        callOptionsFor(call),
      );
      bindSignal(c, call?.signal);
      return duplexCall(c);
    },
    waitForReady(timeoutMs: number): Promise<void> {
      return new Promise((resolve, reject) => channel.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve())));
    },
    connected(): boolean {
      return channel.getChannel().getConnectivityState(false) === grpc.connectivityState.READY;
    },
    close(): void {
      channel.close();
    },
  };
}

/** True when err is a grpc-js status error (from a call made with this adapter). */
export function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number' && 'details' in err;
}
