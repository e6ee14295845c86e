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
export { dataFrameMessage, encodeDataFrame } from '../../proto/frames/index.ts';
