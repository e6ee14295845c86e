/** The public face of proto/frames/: what other folders import (scripts/check-imports.ts). */
export { dataFramePayloadStart, encodeDataFrame, MAX_DATA_FRAME_HEADER_BYTES } from './data-frame.ts';
export { dataFrameMessage } from './data-frame-message.ts';
