/** The public face of agent/disk/: what other folders import (scripts/check-imports.ts). */
export { AlignedSlots, DIRECT_ALIGN, isDirectAligned } from './direct-io.ts';
export { eraseFull, eraseMetadata } from './erase.ts';
export { readTargetChunks } from './hash.ts';
export { type RootDeviceHints, selectRootDisk } from './root-device.ts';
export { openTarget, readFully, type Target, writeFully } from './target.ts';
export { type DigestMethod, type ImageWriter, openImageWriter } from './writer.ts';
