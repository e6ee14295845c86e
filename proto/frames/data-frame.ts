/**
 * The protobuf encoding of an image data frame (bm.agent.v1.ImageFrame with
 * only `offset` and `data`), written straight into one buffer. Both senders
 * of the block protocol use it: the controller (controller/deploy/stream.ts)
 * and a relaying agent (agent/server/relay-sender.ts). protobuf-es's
 * BinaryWriter collects chunks and concatenates them, which for a 1 MiB
 * payload costs two to three copies; here the header goes into spare bytes
 * in front of the payload and the payload is not copied at all. The bytes
 * are the same encoding toBinary produces (controller/deploy/frame-codec.test.ts
 * checks them), so receivers decode with the generated schema.
 */

const TAG_OFFSET = (1 << 3) | 0; // field 1, varint
const TAG_DATA = (2 << 3) | 2; // field 2, length-delimited

/** Header bytes a data frame needs at most: two tags, a 64-bit varint offset, a 32-bit varint length. */
export const MAX_DATA_FRAME_HEADER_BYTES = 1 + 10 + 1 + 5;

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

/**
 * The protobuf encoding of a data frame at `offset` (a safe integer). With
 * `headroom` (bytes before `data` in its buffer that the caller owns) the
 * header is written there and the frame is a view of the caller's buffer:
 * no copy of the payload. Without, one copy.
 */
export function encodeDataFrame(offset: number, data: Uint8Array, headroom = 0): Buffer {
  const offsetBytes = offset === 0 ? 0 : 1 + varintLength(offset);
  const dataBytes = data.length === 0 ? 0 : 1 + varintLength(data.length) + data.length;
  const headerBytes = offsetBytes + dataBytes - data.length;
  if (data.length > 0 && headroom >= headerBytes && data.byteOffset >= headerBytes) {
    const frame = Buffer.from(data.buffer, data.byteOffset - headerBytes, headerBytes + data.length);
    writeHeader(frame, offset, data.length);
    return frame;
  }
  const buffer = Buffer.allocUnsafe(offsetBytes + dataBytes);
  const position = writeHeader(buffer, offset, data.length);
  if (data.length > 0) buffer.set(data, position);
  return buffer;
}

/** Writes the tags and varints of a data frame at the start of `buffer`; returns where the payload goes. */
function writeHeader(buffer: Buffer, offset: number, dataLength: number): number {
  let position = 0;
  if (offset !== 0) {
    buffer[position++] = TAG_OFFSET;
    position = writeVarint(buffer, position, offset);
  }
  if (dataLength > 0) {
    buffer[position++] = TAG_DATA;
    position = writeVarint(buffer, position, dataLength);
  }
  return position;
}

/**
 * Where the payload of a data frame starts in its encoding: the inverse of
 * writeHeader for a message of `size` bytes whose first `filled` bytes
 * (at least MAX_DATA_FRAME_HEADER_BYTES, or the whole message) are in
 * `head`. Undefined for any other message (a start frame, a zero run, a
 * header whose data length does not fill the rest of the message). The
 * agent's receive decoder uses it to place a frame's payload on an aligned
 * boundary before the rest of the message arrives.
 */
export function dataFramePayloadStart(head: Uint8Array, filled: number, size: number): number | undefined {
  let at = 0;
  if (head[0] === TAG_OFFSET) {
    at = 1;
    while (at < filled && ((head[at] as number) & 0x80) !== 0) at++;
    at++;
  }
  if (at >= filled || head[at] !== TAG_DATA) return undefined;
  at++;
  let length = 0;
  for (let scale = 1; at < filled; scale *= 0x80) {
    const byte = head[at++] as number;
    length += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) return length === size - at ? at : undefined;
  }
  return undefined;
}
