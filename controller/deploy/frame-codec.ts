/**
 * A fast path for the one message that carries the image: a data frame
 * `{offset, data}` encoded straight into one buffer. protobuf-es's
 * BinaryWriter collects chunks and concatenates them, growing as it goes,
 * which for a 1 MiB payload costs two to three copies; profiling the deploy
 * stream put it at about a fifth of the controller's CPU. Frames with `start`
 * or a zero run are small and rare, and go through toBinary. The bytes are
 * the same protobuf encoding either way (frame-codec.test.ts checks them
 * against toBinary), so the agent decodes them with the generated schema.
 */
import { create, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { ImageFrameSchema } from '../../proto/gen/bm/agent/v1/agent_pb.js';

type FrameInit = MessageInitShape<typeof ImageFrameSchema>;

const TAG_OFFSET = (1 << 3) | 0; // field 1, varint
const TAG_DATA = (2 << 3) | 2; // field 2, length-delimited

function varintLength(value: number): number {
  let length = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    length++;
  }
  return length;
}

function writeVarint(buffer: Buffer, position: number, value: number): number {
  while (value >= 0x80) {
    buffer[position++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  buffer[position++] = value;
  return position;
}

/** The protobuf encoding of a data frame at `offset` (a safe integer). */
export function encodeDataFrame(offset: number, data: Uint8Array): Buffer {
  const offsetBytes = offset === 0 ? 0 : 1 + varintLength(offset);
  const dataBytes = data.length === 0 ? 0 : 1 + varintLength(data.length) + data.length;
  const buffer = Buffer.allocUnsafe(offsetBytes + dataBytes);
  let position = 0;
  if (offset !== 0) {
    buffer[position++] = TAG_OFFSET;
    position = writeVarint(buffer, position, offset);
  }
  if (data.length > 0) {
    buffer[position++] = TAG_DATA;
    position = writeVarint(buffer, position, data.length);
    buffer.set(data, position);
  }
  return buffer;
}

/** A frame to send: already-encoded bytes (data frames) or a message for toBinary. */
export type OutgoingFrame = { readonly encoded: Buffer } | { readonly message: FrameInit };

export function serializeFrame(frame: OutgoingFrame): Buffer {
  if ('encoded' in frame) return frame.encoded;
  const bytes = toBinary(ImageFrameSchema, create(ImageFrameSchema, frame.message));
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
