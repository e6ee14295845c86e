/**
 * Decompresses one qcow2 compressed cluster (QEMU docs/interop/qcow2.txt,
 * "Compressed Clusters Descriptor"; compression_type 0 = raw deflate,
 * 1 = zstd). The input is what the descriptor names: whole sectors, so it
 * may carry bytes after the stream; the output must be exactly one cluster,
 * never more (a zip bomb fails instead of allocating).
 */
import { constants as zlibConstants, inflateRawSync, zstdDecompressSync } from 'node:zlib';
import { hex, Qcow2FormatError } from '../errors.ts';
import { zstdFrameAt } from './zstd-frames.ts';

export const CompressionType = { deflate: 0, zstd: 1 } as const;

/**
 * The largest zstd window we accept (8 MiB). QEMU compresses a cluster of at
 * most 2 MiB in one call, so its frames never need more; a hostile frame
 * declaring zstd's default limit of 128 MiB would make us allocate it.
 */
const ZSTD_WINDOW_LOG_MAX = 23;

export interface CompressedCluster {
  readonly cluster: number;
  readonly host: number;
}

function failure(where: CompressedCluster, message: string): Qcow2FormatError {
  return new Qcow2FormatError('compressed_cluster', `guest cluster ${where.cluster} at ${hex(where.host)} ${message}`, {
    cluster: where.cluster,
    value: hex(where.host),
  });
}

export function decompressCluster(type: number, compressed: Uint8Array, clusterSize: number, where: CompressedCluster): Uint8Array {
  const out = type === CompressionType.zstd ? decodeZstd(compressed, clusterSize, where) : decodeDeflate(compressed, clusterSize, where);
  if (out.length !== clusterSize) throw failure(where, `decompresses to ${out.length} bytes, not ${clusterSize}`);
  return out;
}

function decodeDeflate(compressed: Uint8Array, clusterSize: number, where: CompressedCluster): Uint8Array {
  try {
    // Z_SYNC_FLUSH: the stream may be followed by the next cluster's bytes,
    // and inflating must stop once a cluster is produced.
    return inflateRawSync(compressed, { maxOutputLength: clusterSize, finishFlush: zlibConstants.Z_SYNC_FLUSH });
  } catch (err) {
    throw failure(where, `does not inflate to one cluster: ${(err as Error).message}`);
  }
}

/**
 * QEMU decodes frame after frame until the cluster is full and requires that
 * to happen at a frame's end; bytes after that frame are ignored.
 */
function decodeZstd(compressed: Uint8Array, clusterSize: number, where: CompressedCluster): Uint8Array {
  const parts: Uint8Array[] = [];
  let produced = 0;
  let at = 0;
  while (produced < clusterSize) {
    if (at >= compressed.length) throw failure(where, `zstd frames end after ${produced} of ${clusterSize} bytes`);
    const frame = zstdFrameAt(compressed, at, where.cluster);
    const bytes = compressed.subarray(at, at + frame.length);
    at += frame.length;
    if (frame.skippable) continue;
    let out: Uint8Array;
    try {
      out = zstdDecompressSync(bytes, {
        maxOutputLength: clusterSize - produced,
        params: { [zlibConstants.ZSTD_d_windowLogMax]: ZSTD_WINDOW_LOG_MAX },
      });
    } catch (err) {
      throw failure(where, `does not decompress (zstd) to one cluster: ${(err as Error).message}`);
    }
    parts.push(out);
    produced += out.length;
  }
  if (parts.length === 1) return parts[0] as Uint8Array;
  return Buffer.concat(parts, produced);
}
