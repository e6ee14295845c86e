/** The public face of proto/digest/: what other folders import (scripts/check-imports.ts). */
export {
  BlockSha256,
  combineBlockDigests,
  createImageHasher,
  DIGEST_BLOCK_BYTES,
  DigestAlgorithm,
  type ImageHasher,
  isDigestAlgorithm,
  PlainSha256,
  zeroBlockSha256,
} from './block-sha256.ts';
