/**
 * The deploy stream's tuning, chosen by measuring on loopback to agents
 * writing to files (test/bench/stream.bench.ts; figures in
 * docs/performance-notes.md and the bench output):
 *
 * - chunk size: the largest data frame. Of 256 KiB, 1 MiB and 4 MiB no size
 *   wins consistently: the run-to-run noise is larger than the differences.
 *   1 MiB was best or close in most runs and keeps per-stream memory small
 *   (every chunk exists two or three times on its way: read, encoded,
 *   framed).
 * - flow-control window: grpc-js's `grpc-node.flow_control_window` sets the
 *   HTTP/2 window this side advertises (what the agent may send us before
 *   we read: acknowledgements and ReadImage chunks). The window for frames
 *   we send is the agent's to set (it widens grpc-js's 64 KiB default:
 *   proto/rpc/receive-window.ts).
 * - commit interval: how often the agent fdatasyncs and acknowledges; the
 *   checkpoint granularity.
 * - max uncommitted: how far the sender may run ahead of the last
 *   acknowledged offset, in data bytes; it bounds what a broken stream must
 *   send again. It must exceed one commit interval plus one chunk, or the
 *   agent would never reach its next commit while we wait for it.
 * - max buffered: data bytes handed to grpc-js but not yet written to the
 *   socket; it bounds the controller's memory per stream.
 */
export interface StreamTuning {
  readonly chunkBytes: number;
  readonly flowControlWindow: number;
  readonly commitIntervalBytes: number;
  readonly maxUncommittedBytes: number;
  readonly maxBufferedBytes: number;
}

const MIB = 1024 * 1024;

export const DEFAULT_TUNING: StreamTuning = {
  chunkBytes: 1 * MIB,
  flowControlWindow: 8 * MIB,
  commitIntervalBytes: 64 * MIB,
  maxUncommittedBytes: 128 * MIB,
  maxBufferedBytes: 4 * MIB,
};

/** Refuses tunings that could deadlock (see maxUncommittedBytes above). */
export function checkTuning(tuning: StreamTuning): void {
  // The agent clamps the interval to [1 MiB, 4 GiB]; outside it our window arithmetic would be wrong.
  if (
    !Number.isSafeInteger(tuning.commitIntervalBytes) ||
    tuning.commitIntervalBytes < MIB ||
    tuning.commitIntervalBytes > 4 * 1024 * MIB
  ) {
    throw new RangeError(`commitIntervalBytes ${tuning.commitIntervalBytes} must be an integer in [1 MiB, 4 GiB]`);
  }
  if (tuning.maxUncommittedBytes < tuning.commitIntervalBytes + tuning.chunkBytes) {
    throw new RangeError(
      `maxUncommittedBytes ${tuning.maxUncommittedBytes} must be at least commitIntervalBytes + chunkBytes (${tuning.commitIntervalBytes + tuning.chunkBytes})`,
    );
  }
  if (tuning.maxBufferedBytes < tuning.chunkBytes)
    throw new RangeError(`maxBufferedBytes ${tuning.maxBufferedBytes} must be at least chunkBytes ${tuning.chunkBytes}`);
}
