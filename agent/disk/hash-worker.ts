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
 * - `file`: sha256 of bytes [start, end) of the file at `path`, read
 *   through two reused buffers in turn (O_DIRECT where it can), with the
 *   sorted [start, end) pairs in `zeros` hashed as zeros instead of read
 *   (the zero runs the writer skipped).
 * Tasks run one at a time, in the order they came.
 * The digest is raw (32 bytes) or hex when `hex` is set. A `file` task
 * with a `session` continues that session's hash instead (a plain sha256 of
 * a whole image, sent in pieces so it can be stopped between them) and
 * answers with a digest only when `final` is set; `drop` forgets a session.
 */
export function hashWorkerMain(): void {
  const { parentPort } = require('node:worker_threads') as typeof import('node:worker_threads');
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  const { openSync, read, closeSync, constants } = require('node:fs') as typeof import('node:fs');
  if (parentPort === null) return;
  const port = parentPort;
  const READ_BYTES = 1024 * 1024;
  // Reads go past the page cache (O_DIRECT) where the target allows it: the writer put the data there the same
  // way (agent/disk/direct-io.ts), so a buffered read would fill the cache with every byte only to hash it once,
  // which on a VM that hands freed memory to its host cost 2 CPU-s per GiB. Direct reads get no readahead, so
  // two buffers take turns: the next piece is read while this one is hashed. O_DIRECT needs aligned memory:
  // a WebAssembly.Memory is mapped page-aligned.
  const ALIGN = 4096;
  const wasm = (
    globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer } } }
  ).WebAssembly;
  const pages = (2 * READ_BYTES) / 65536;
  const memory = new wasm.Memory({ initial: pages, maximum: pages }).buffer;
  const buffers = [new Uint8Array(memory, 0, READ_BYTES), new Uint8Array(memory, READ_BYTES, READ_BYTES)] as const;
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

  function openDirect(path: string): number | null {
    try {
      return openSync(path, constants.O_RDONLY | constants.O_DIRECT);
    } catch {
      return null;
    }
  }

  function readAt(fd: number, buffer: Uint8Array, length: number, position: number): Promise<number> {
    return new Promise((resolve, reject) => read(fd, buffer, 0, length, position, (error, n) => (error ? reject(error) : resolve(n))));
  }

  /** What hashFile does, in order: read [position, position + length) and hash it, or hash `length` zeros. */
  interface Piece {
    readonly zeros: boolean;
    readonly position: number;
    readonly length: number;
  }

  function piecesOf(task: FileTask): Piece[] {
    const pieces: Piece[] = [];
    let position = task.start;
    const readUpTo = (to: number): void => {
      for (; position < to; position += Math.min(READ_BYTES, to - position))
        pieces.push({ zeros: false, position, length: Math.min(READ_BYTES, to - position) });
    };
    for (let i = 0; i + 1 < task.zeros.length; i += 2) {
      const zeroStart = task.zeros[i] as number;
      const zeroEnd = task.zeros[i + 1] as number;
      readUpTo(zeroStart);
      pieces.push({ zeros: true, position: zeroStart, length: zeroEnd - zeroStart });
      position = zeroEnd;
    }
    readUpTo(task.end);
    return pieces;
  }

  async function hashFile(hash: Hash, task: FileTask): Promise<void> {
    const fd = openSync(task.path, 'r');
    let direct = openDirect(task.path);
    /** Fills `buffer` with the piece's bytes: whole aligned blocks past the cache where it can, else through it. */
    const fill = async (buffer: Uint8Array, piece: Piece): Promise<void> => {
      let got = 0;
      while (got < piece.length) {
        const at = piece.position + got;
        let n: number | undefined;
        if (direct !== null && at % ALIGN === 0 && got % ALIGN === 0) {
          try {
            // Whole blocks, even past the piece (the target is at least that long, or the read stops at its end).
            n = await readAt(direct, buffer.subarray(got), Math.ceil((piece.length - got) / ALIGN) * ALIGN, at);
          } catch (error) {
            if ((error as { code?: string }).code !== 'EINVAL') throw error;
            closeSync(direct);
            direct = null;
          }
        }
        n ??= await readAt(fd, buffer.subarray(got), piece.length - got, at);
        if (n === 0) throw new Error(`target ends at ${at}, before ${piece.position + piece.length}`);
        got += n;
      }
    };
    try {
      const pieces = piecesOf(task);
      const reads = pieces.filter((p) => !p.zeros);
      let next = 0;
      let filling: Promise<void> | undefined = reads[0] ? fill(buffers[0], reads[0]) : undefined;
      for (const piece of pieces) {
        if (piece.zeros) {
          hashZeros(hash, piece.length);
          continue;
        }
        const buffer = buffers[next % 2] as Uint8Array;
        await filling;
        next++;
        const following = reads[next];
        filling = following ? fill(buffers[next % 2] as Uint8Array, following) : undefined;
        // A failed read ahead surfaces when its turn comes, not as an unhandled rejection now.
        filling?.catch(() => undefined);
        hash.update(buffer.subarray(0, piece.length));
      }
    } finally {
      closeSync(fd);
      if (direct !== null) closeSync(direct);
    }
  }

  /** One task at a time, in the order they came: a session's pieces must be hashed in order. */
  let turn: Promise<void> = Promise.resolve();

  port.on('message', (task: MemoryTask | FileTask | DropTask) => {
    turn = turn.then(() => run(task));
  });

  async function run(task: MemoryTask | FileTask | DropTask): Promise<void> {
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
          await hashFile(hash, task);
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
      else await hashFile(hash, task);
      port.postMessage({ id: task.id, digest: task.hex === true ? hash.digest('hex') : hash.digest() });
    } catch (error) {
      port.postMessage({ id: task.id, error: error instanceof Error ? error.message : String(error) });
    }
  }
}

/** What a worker is started from. */
export const HASH_WORKER_SOURCE = `(${hashWorkerMain.toString()})();`;
