/**
 * Serialisers for grpc-js built from protobuf-es message descriptors: the one
 * place messages become bytes, so no service needs code of its own for it.
 */
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { frameInPlace, GRPC_MESSAGE_HEADER_BYTES } from './in-place-framing.ts';

/**
 * A message its sender has already encoded (a hot path with a codec of its
 * own, e.g. the deploy stream's data frames): the serialiser passes its bytes
 * through untouched. It names its schema so bytes meant for one message type
 * are never sent as another.
 */
export class EncodedMessage<D extends DescMessage = DescMessage> {
  readonly schema: D;
  readonly bytes: Buffer;
  /**
   * Spare bytes right before `bytes` in its buffer that the sender owns
   * until the write's callback: on a connection framing in place
   * (in-place-framing.ts) the gRPC message header goes there.
   */
  readonly headroom: number;
  constructor(schema: D, bytes: Buffer, headroom = 0) {
    this.schema = schema;
    this.bytes = bytes;
    this.headroom = Math.min(headroom, bytes.byteOffset);
  }
}

/** Wraps bytes that already are the protobuf encoding of a `schema` message, with `headroom` spare bytes in front. */
export function encoded<D extends DescMessage>(schema: D, bytes: Buffer, headroom = 0): EncodedMessage<D> {
  return new EncodedMessage(schema, bytes, headroom);
}

/** Thrown by a serialiser handed bytes encoded for another message type. */
export class EncodedSchemaMismatchError extends Error {
  constructor(expected: string, got: string) {
    super(`bytes encoded as ${got} cannot be sent as ${expected}`);
    this.name = 'EncodedSchemaMismatchError';
  }
}

/**
 * `inPlace`: the connection frames in place (in-place-framing.ts), so an
 * encoded message with room for the gRPC header in front is sent as it is.
 */
export function serializer<D extends DescMessage>(schema: D, inPlace = false): (value: MessageInitShape<D> | EncodedMessage<D>) => Buffer {
  return (value) => {
    if (value instanceof EncodedMessage) {
      if (value.schema !== schema) throw new EncodedSchemaMismatchError(schema.typeName, value.schema.typeName);
      return inPlace && value.headroom >= GRPC_MESSAGE_HEADER_BYTES ? frameInPlace(value.bytes) : value.bytes;
    }
    const bytes = toBinary(schema, create(schema, value));
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/** Throws on malformed bytes; grpc-js turns that into an INTERNAL status for the call alone. */
export function deserializer<D extends DescMessage>(schema: D): (bytes: Buffer) => MessageShape<D> {
  return (bytes) => fromBinary(schema, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}
