/**
 * A fast path for the one message that carries the image: a data frame
 * `{offset, data}` encoded straight into one buffer. protobuf-es's
 * BinaryWriter collects chunks and concatenates them, growing as it goes,
 * which for a 1 MiB payload costs two to three copies, a large share of the
 * controller's CPU in a deploy (docs/performance-notes.md). Frames with `start`
 * or a zero run are small and rare, and go through toBinary. The bytes are
 * the same protobuf encoding either way (frame-codec.test.ts checks them
 * against toBinary), so the agent decodes them with the generated schema;
 * the rpc adapter sends them as they are (its encoded()).
 */

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

/**
 * The protobuf encoding of a data frame at `offset` (a safe integer). With
 * `headroom` (bytes before `data` in its buffer that the caller owns, see
 * DataExtent) the header is written there and the frame is a view of the
 * caller's buffer: no copy of the payload. Without, one copy.
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
