/**
 * The frames the controller sends: data frames encoded by the shared fast
 * path (proto/frames/data-frame.ts: the header in front of the payload, no
 * copy of it), and the small, rare ones (`start`, zero runs) as messages
 * that the rpc adapter encodes with toBinary. The bytes are the same
 * protobuf encoding either way (frame-codec.test.ts checks them against
 * toBinary), so the agent decodes them with the generated schema; the
 * adapter sends pre-encoded data frames as they are (its encoded()), and
 * with the headroom left in front of the frame it frames them for gRPC in
 * place too (proto/rpc/in-place-framing.ts).
 */
import { ImageFrameSchema } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { encodeDataFrame } from '../../proto/frames/index.ts';
import { encoded, type EncodedMessage } from '../../proto/rpc/index.ts';

export { encodeDataFrame };

/**
 * A data frame at `offset` as a message for the rpc adapter: a view of the
 * caller's buffer when `headroom` spare bytes precede `data` there, with
 * whatever headroom the frame header left over.
 */
export function dataFrameMessage(offset: number, data: Uint8Array, headroom = 0): EncodedMessage<typeof ImageFrameSchema> {
  const frame = encodeDataFrame(offset, data, headroom);
  const inPlace = frame.buffer === data.buffer && frame.byteOffset + frame.length === data.byteOffset + data.length;
  return encoded(ImageFrameSchema, frame, inPlace ? headroom - (frame.length - data.length) : 0);
}
