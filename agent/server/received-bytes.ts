/**
 * What the agent received of the image it is writing, over every stream of
 * one deploy. A resumed stream (a broken connection, or another controller
 * taking the node over from a checkpoint) may carry bytes an earlier stream
 * already delivered: those are the re-sent bytes, the cost of a resume that
 * the controller cannot see by itself (a dead controller's counts die with
 * it). A stream of another image starts a new count, as does a new deploy
 * of the same image once the last one finished.
 */

export interface ReceivedBytesSnapshot {
  /** Streams of this deploy so far, the first included. */
  readonly streams: number;
  /** Data bytes received (zero runs travel as a length and are not counted). */
  readonly bytesReceived: number;
  /** Data bytes received at offsets an earlier stream of this deploy had already delivered. */
  readonly bytesResent: number;
}

export class ReceivedBytes {
  #imageKey: string | undefined;
  #finished = false;
  #streams = 0;
  #bytesReceived = 0;
  #bytesResent = 0;
  /** End of the furthest frame of any stream so far. */
  #receivedUpTo = 0;
  /** End of the furthest frame of the streams before the current one: below it, a frame is re-sent. */
  #earlierUpTo = 0;

  /** A stream starts: `imageKey` tells whether it continues the deploy being counted. */
  beginStream(imageKey: string): void {
    if (imageKey !== this.#imageKey || this.#finished) {
      this.#imageKey = imageKey;
      this.#finished = false;
      this.#streams = 0;
      this.#bytesReceived = 0;
      this.#bytesResent = 0;
      this.#receivedUpTo = 0;
    }
    this.#streams++;
    this.#earlierUpTo = this.#receivedUpTo;
  }

  data(offset: number, length: number): void {
    if (length <= 0) return;
    this.#bytesReceived += length;
    this.#bytesResent += Math.max(0, Math.min(offset + length, this.#earlierUpTo) - offset);
    this.#receivedUpTo = Math.max(this.#receivedUpTo, offset + length);
  }

  /** The image is complete: the next stream is a new deploy. */
  finished(): void {
    this.#finished = true;
  }

  snapshot(): ReceivedBytesSnapshot {
    return { streams: this.#streams, bytesReceived: this.#bytesReceived, bytesResent: this.#bytesResent };
  }
}
