/**
 * What a deploy expects the agent to report for the image it wrote: the
 * image's 4 MiB block digest where the catalog has one (its holes cost the
 * agent nothing to hash), else the plain sha256 of its raw content.
 */
import { DigestAlgorithm } from '../../proto/digest/index.ts';

export interface ExpectedDigest {
  readonly algorithm: DigestAlgorithm;
  /** Hex digest of the image's raw content, by `algorithm`. */
  readonly hex: string;
}

export function expectedDigestOf(image: { readonly rawSha256: string; readonly rawBlockSha256: string }): ExpectedDigest {
  return image.rawBlockSha256
    ? { algorithm: DigestAlgorithm.blocks, hex: image.rawBlockSha256 }
    : { algorithm: DigestAlgorithm.sha256, hex: image.rawSha256 };
}
