/**
 * How large a request each API method takes. Only an image upload carries
 * bulk data; every other request is a few fields, so a small limit keeps a
 * caller from making the controller decode megabytes (DESIGN: bad input gets
 * a clear error and the server keeps serving).
 */
import type { DescMethod } from '@bufbuild/protobuf';

/** Methods whose requests carry bulk data, with the server-wide message limit instead of the small one. */
const BULK_METHODS: ReadonlySet<string> = new Set(['bm.v1.ImageService/CreateImage']);

export function requestLimits(api: {
  readonly max_message_bytes: number;
  readonly max_request_bytes: number;
}): (method: DescMethod) => number {
  return (method) =>
    BULK_METHODS.has(`${method.parent.typeName}/${method.name}`)
      ? api.max_message_bytes
      : Math.min(api.max_request_bytes, api.max_message_bytes);
}
