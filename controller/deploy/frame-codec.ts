/**
 * The frames the controller sends: data frames encoded by the shared fast
 * path (proto/frames/data-frame.ts: the header in front of the payload, no
 * copy of it), and the small, rare ones (`start`, zero runs) through
 * toBinary. The bytes are the same protobuf encoding either way
 * (frame-codec.test.ts checks them against toBinary), so the agent decodes
 * them with the generated schema.
 */
import { create, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { ImageFrameSchema } from '../../proto/gen/bm/agent/v1/agent_pb.js';

export { encodeDataFrame } from '../../proto/frames/data-frame.ts';

type FrameInit = MessageInitShape<typeof ImageFrameSchema>;

/** A frame to send: already-encoded bytes (data frames) or a message for toBinary. */
export type OutgoingFrame = { readonly encoded: Buffer } | { readonly message: FrameInit };

export function serializeFrame(frame: OutgoingFrame): Buffer {
  if ('encoded' in frame) return frame.encoded;
  const bytes = toBinary(ImageFrameSchema, create(ImageFrameSchema, frame.message));
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
