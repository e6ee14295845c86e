/**
 * A data frame as a message for the rpc adapter, shared by the two senders
 * of the block protocol (the controller's stream and an agent's relay). When
 * the caller left spare bytes in front of the payload, the frame header goes
 * there (data-frame.ts), and what headroom is left over lets the adapter
 * frame the message for gRPC in place as well (proto/rpc/in-place-framing.ts):
 * the payload then reaches the socket without a copy of ours or grpc-js's.
 */
import { ImageFrameSchema } from '../gen/bm/agent/v1/agent_pb.js';
import { encoded, type EncodedMessage } from '../rpc/index.ts';
import { encodeDataFrame } from './data-frame.ts';

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
