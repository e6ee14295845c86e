/**
 * Serialisers for grpc-js built from protobuf-es message descriptors: the one
 * place messages become bytes, so no service needs code of its own for it.
 */
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';

/**
 * A message its sender has already encoded (a hot path with a codec of its
 * own, e.g. the deploy stream's data frames): the serialiser passes its bytes
 * through untouched. It names its schema so bytes meant for one message type
 * are never sent as another.
 */
export class EncodedMessage<D extends DescMessage = DescMessage> {
  readonly schema: D;
  readonly bytes: Buffer;
  constructor(schema: D, bytes: Buffer) {
    this.schema = schema;
    this.bytes = bytes;
  }
}

/** Wraps bytes that already are the protobuf encoding of a `schema` message. */
export function encoded<D extends DescMessage>(schema: D, bytes: Buffer): EncodedMessage<D> {
  return new EncodedMessage(schema, bytes);
}

/** Thrown by a serialiser handed bytes encoded for another message type. */
export class EncodedSchemaMismatchError extends Error {
  constructor(expected: string, got: string) {
    super(`bytes encoded as ${got} cannot be sent as ${expected}`);
    this.name = 'EncodedSchemaMismatchError';
  }
}

export function serializer<D extends DescMessage>(schema: D): (value: MessageInitShape<D> | EncodedMessage<D>) => Buffer {
  return (value) => {
    if (value instanceof EncodedMessage) {
      if (value.schema !== schema) throw new EncodedSchemaMismatchError(schema.typeName, value.schema.typeName);
      return value.bytes;
    }
    const bytes = toBinary(schema, create(schema, value));
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/** Throws on malformed bytes; grpc-js turns that into an INTERNAL status for the call alone. */
export function deserializer<D extends DescMessage>(schema: D): (bytes: Buffer) => MessageShape<D> {
  return (bytes) => fromBinary(schema, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}
