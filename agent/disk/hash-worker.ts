/**
 * The code a hashing worker thread runs. It is started from its source text
 * (`new Worker(HASH_WORKER_SOURCE, { eval: true })`), not from a file: the
 * agent ships as one esbuild bundle in a ramdisk, and a worker started from
 * a module path would need that module beside the bundle. So this function
 * must stand alone: no imports, no references to anything outside it (its
 * text is all the worker gets), only Node's built-ins through `require`.
 *
 * Tasks (one reply each, `{ id, digest }` or `{ id, error }`):
 * - `memory`: sha256 of `length` bytes at `offset` of a SharedArrayBuffer
 *   (a 4 MiB block the main thread filled from the frames it received);
 * - `file`: sha256 of bytes [start, end) of the file at `path`, read through
 *   one reused buffer, with the sorted [start, end) pairs in `zeros` hashed
 *   as zeros instead of read (the zero runs the writer skipped).
 * The digest is raw (32 bytes) or hex when `hex` is set. A `file` task
 * with a `session` continues that session's hash instead (a plain sha256 of
 * a whole image, sent in pieces so it can be stopped between them) and
 * answers with a digest only when `final` is set; `drop` forgets a session.
 */
export function hashWorkerMain(): void {
  const { parentPort } = require('node:worker_threads') as typeof import('node:worker_threads');
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  const { openSync, readSync, closeSync } = require('node:fs') as typeof import('node:fs');
  if (parentPort === null) return;
  const port = parentPort;
  const READ_BYTES = 1024 * 1024;
  const buffer = new Uint8Array(READ_BYTES);
  const zeroPiece = new Uint8Array(1024 * 1024);

  interface MemoryTask {
    readonly id: number;
    readonly kind: 'memory';
    readonly buffer: SharedArrayBuffer;
    readonly offset: number;
    readonly length: number;
    readonly hex?: boolean;
  }
  interface FileTask {
    readonly id: number;
    readonly kind: 'file';
    readonly path: string;
    readonly start: number;
    readonly end: number;
    readonly zeros: readonly number[];
    readonly hex?: boolean;
    readonly session?: number;
    readonly final?: boolean;
  }
  interface DropTask {
    readonly id: number;
    readonly kind: 'drop';
    readonly session: number;
  }
  type Hash = ReturnType<typeof createHash>;
  const sessions = new Map<number, Hash>();

  function hashZeros(hash: Hash, length: number): void {
    for (let left = length; left > 0; left -= zeroPiece.length) hash.update(zeroPiece.subarray(0, Math.min(left, zeroPiece.length)));
  }

  function hashFile(hash: Hash, task: FileTask): void {
    const fd = openSync(task.path, 'r');
    try {
      let position = task.start;
      const readUpTo = (to: number): void => {
        while (position < to) {
          const want = Math.min(buffer.length, to - position);
          let got = 0;
          while (got < want) {
            const n = readSync(fd, buffer, got, want - got, position + got);
            if (n === 0) throw new Error(`target ends at ${position + got}, before ${to}`);
            got += n;
          }
          hash.update(buffer.subarray(0, want));
          position += want;
        }
      };
      for (let i = 0; i + 1 < task.zeros.length; i += 2) {
        const zeroStart = task.zeros[i] as number;
        const zeroEnd = task.zeros[i + 1] as number;
        readUpTo(zeroStart);
        hashZeros(hash, zeroEnd - zeroStart);
        position = zeroEnd;
      }
      readUpTo(task.end);
    } finally {
      closeSync(fd);
    }
  }

  port.on('message', (task: MemoryTask | FileTask | DropTask) => {
    try {
      if (task.kind === 'drop') {
        sessions.delete(task.session);
        port.postMessage({ id: task.id, digest: '' });
        return;
      }
      if (task.kind === 'file' && task.session !== undefined) {
        let hash = sessions.get(task.session);
        if (hash === undefined) sessions.set(task.session, (hash = createHash('sha256')));
        try {
          hashFile(hash, task);
        } catch (error) {
          sessions.delete(task.session);
          throw error;
        }
        if (task.final !== true) {
          port.postMessage({ id: task.id, digest: '' });
          return;
        }
        sessions.delete(task.session);
        port.postMessage({ id: task.id, digest: task.hex === true ? hash.digest('hex') : hash.digest() });
        return;
      }
      const hash = createHash('sha256');
      if (task.kind === 'memory') hash.update(new Uint8Array(task.buffer, task.offset, task.length));
      else hashFile(hash, task);
      port.postMessage({ id: task.id, digest: task.hex === true ? hash.digest('hex') : hash.digest() });
    } catch (error) {
      port.postMessage({ id: task.id, error: error instanceof Error ? error.message : String(error) });
    }
  });
}

/** What a worker is started from. */
export const HASH_WORKER_SOURCE = `(${hashWorkerMain.toString()})();`;
