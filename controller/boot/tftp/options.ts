/**
 * Option negotiation for read requests: blksize (RFC 2348), timeout and
 * tsize (RFC 2349), windowsize (RFC 7440). Unknown options are ignored, as
 * RFC 2347 asks; a known option with a value outside its range is ignored
 * too (the client then gets the RFC 1350 default), never an error.
 */
import type { TftpOptions } from './packet.ts';

export interface TftpLimits {
  /** Largest block we agree to; the client may ask less. */
  readonly maxBlockSize: number;
  /** Largest window we agree to. */
  readonly maxWindowSize: number;
}

export interface NegotiatedTransfer {
  readonly blockSize: number;
  readonly windowSize: number;
  readonly timeoutMs: number | null;
  /** The options echoed in the OACK; empty means no OACK is sent (plain RFC 1350). */
  readonly accepted: ReadonlyMap<string, string>;
}

function integer(value: string): number | null {
  return /^\d{1,6}$/.test(value) ? Number(value) : null;
}

export function negotiate(requested: TftpOptions, fileSize: number, limits: TftpLimits): NegotiatedTransfer {
  const accepted = new Map<string, string>();
  let blockSize = 512;
  let windowSize = 1;
  let timeoutMs: number | null = null;
  const blk = requested.get('blksize');
  if (blk !== undefined) {
    const n = integer(blk);
    // RFC 2348: 8..65464; the server may answer with a smaller size.
    if (n !== null && n >= 8 && n <= 65464) {
      blockSize = Math.min(n, limits.maxBlockSize);
      accepted.set('blksize', String(blockSize));
    }
  }
  const timeout = requested.get('timeout');
  if (timeout !== undefined) {
    const n = integer(timeout);
    // RFC 2349: 1..255 seconds, and the server must accept it as given or not at all.
    if (n !== null && n >= 1 && n <= 255) {
      timeoutMs = n * 1000;
      accepted.set('timeout', String(n));
    }
  }
  const tsize = requested.get('tsize');
  if (tsize !== undefined && integer(tsize) !== null) accepted.set('tsize', String(fileSize));
  const window = requested.get('windowsize');
  if (window !== undefined) {
    const n = integer(window);
    if (n !== null && n >= 1 && n <= 65535) {
      windowSize = Math.min(n, limits.maxWindowSize);
      accepted.set('windowsize', String(windowSize));
    }
  }
  return { blockSize, windowSize, timeoutMs, accepted };
}
