/**
 * A qcow2 image as an ImageSource. It walks the active L1 table in order,
 * reads each L2 table once, and turns guest clusters into extents: holes and
 * zero clusters become (merged) zero extents, data clusters that are
 * contiguous in the file are read together (up to the chunk size), and
 * runs of compressed clusters (deflate or zstd) are decompressed together,
 * each into exactly one cluster. Data is read and decompressed into pooled
 * chunks (../chunk-pool.ts) that the consumer hands back.
 *
 * Every offset taken from the file is checked before anything is streamed:
 * open() maps the image's metadata (header, L1 and refcount tables, refcount
 * blocks, L2 tables) and reads every L2 table once, refusing any entry that
 * points outside the file or into metadata (so an L2 table is never used
 * twice and the walk reads at most the file's size in metadata). Inflating
 * can never produce more than a cluster.
 */
import {
  checkChunkSize,
  checkFromOffset,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_ZERO_BLOCK,
  mergeZeros,
  splitZeroBlocks,
  chunkData,
  type Extent,
  type ImageSource,
} from '../extents.ts';
import { ChunkPool, FRAME_HEADROOM, type PooledChunk } from '../chunk-pool.ts';
import type { RandomAccessReader } from '../random-access.ts';
import { hex, Qcow2FormatError } from '../errors.ts';
import { decompressCluster } from './decompress.ts';
import { assertReadable, MAX_CLUSTER_BITS, parseQcow2Header, type Qcow2Header } from './header.ts';
import { decodeL1Entry, decodeL2Entry, type L2Entry } from './l2.ts';
import { planLayout, type Qcow2Layout } from './layout.ts';
import type { MetadataMap } from './metadata-map.ts';
import { checkL2TableBounds, scanMetadata } from './metadata-scan.ts';

export interface Qcow2ImageOptions {
  /** Largest data extent and largest single read (default 1 MiB). */
  readonly chunkSize?: number;
  /** Split allocated clusters that hold only zeros into zero extents, at this granularity (default 4 KiB). */
  readonly zeroBlock?: number;
  /** Set false to yield allocated clusters as data even when they are all zeros. */
  readonly detectZeros?: boolean;
}

/** One L2 table's worth of the walk: `table` is undefined when the L1 entry is empty. */
export interface L2TableVisit {
  readonly l1Index: number;
  readonly firstCluster: number;
  /** Guest clusters this visit covers (the last table may be partly beyond the disk). */
  readonly clusters: number;
  readonly tableOffset: number;
  readonly table: DataView | undefined;
}

type Op =
  | { readonly kind: 'zero'; readonly offset: number; readonly length: number }
  | { readonly kind: 'read'; readonly offset: number; readonly host: number; readonly length: number }
  | {
      /** Guest-contiguous compressed clusters, decompressed together into one chunk. */
      readonly kind: 'compressed';
      readonly offset: number;
      readonly length: number;
      readonly clusters: readonly CompressedPiece[];
    };

interface CompressedPiece {
  readonly offset: number;
  readonly host: number;
  readonly compressedSize: number;
  /** Which part of the decompressed cluster the disk needs. */
  readonly skip: number;
  readonly length: number;
  readonly cluster: number;
}

/** Bytes of one op, in a pooled chunk when the reader can read into one. */
interface OpData {
  readonly data: Uint8Array;
  readonly chunk: PooledChunk | undefined;
}

export async function readQcow2Header(reader: RandomAccessReader): Promise<Qcow2Header> {
  // The header's extensions can use the whole first cluster, whose size we
  // learn from the header itself: read the largest possible cluster at once.
  const first = await reader.read(0, Math.min(reader.size, 2 ** MAX_CLUSTER_BITS));
  return parseQcow2Header(first);
}

export class Qcow2Image implements ImageSource {
  readonly format = 'qcow2' as const;
  readonly virtualSize: number;
  readonly layout: Qcow2Layout;
  readonly #reader: RandomAccessReader;
  readonly #l1: DataView;
  readonly #chunkSize: number;
  readonly #zeroBlock: number;
  readonly #detectZeros: boolean;
  readonly #metadata: MetadataMap;
  readonly #pool: ChunkPool;

  private constructor(reader: RandomAccessReader, layout: Qcow2Layout, l1: DataView, metadata: MetadataMap, options: Qcow2ImageOptions) {
    this.#reader = reader;
    this.#metadata = metadata;
    this.layout = layout;
    this.virtualSize = layout.header.virtualSize;
    this.#l1 = l1;
    this.#chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.#zeroBlock = options.zeroBlock ?? DEFAULT_ZERO_BLOCK;
    this.#detectZeros = options.detectZeros ?? true;
    checkChunkSize(this.#chunkSize, this.#zeroBlock);
    // A compressed cluster is decompressed whole, so a chunk holds at least one cluster.
    this.#pool = new ChunkPool(Math.max(this.#chunkSize, layout.clusterSize));
  }

  /** Chunk buffers allocated so far (the rest were reused). */
  get buffersAllocated(): number {
    return this.#pool.allocated;
  }

  /**
   * Parses and checks the header, reads the active L1 table and checks every
   * table entry (reading each L2 table once); refuses unsupported images and
   * any entry that points outside the file or into the image's metadata.
   */
  static async open(reader: RandomAccessReader, options: Qcow2ImageOptions = {}): Promise<Qcow2Image> {
    const header = await readQcow2Header(reader);
    assertReadable(header);
    const layout = planLayout(header, reader.size);
    const l1Bytes = await reader.read(header.l1TableOffset, layout.l1Entries * 8);
    if (l1Bytes.length !== layout.l1Entries * 8) {
      throw new Qcow2FormatError('l1_table_offset', `L1 table truncated: read ${l1Bytes.length} of ${layout.l1Entries * 8} bytes`, {
        value: hex(header.l1TableOffset),
      });
    }
    const l1 = new DataView(l1Bytes.buffer, l1Bytes.byteOffset, l1Bytes.byteLength);
    const image = new Qcow2Image(reader, layout, l1, await scanMetadata(reader, layout, l1), options);
    await image.#checkEntries();
    return image;
  }

  /** Decodes every L2 entry once, so a bad one is refused before the first extent is yielded. */
  async #checkEntries(): Promise<void> {
    for await (const visit of this.l2Tables()) {
      if (visit.table === undefined) continue;
      for (let index = 0; index < visit.clusters; index++) this.entry(visit.table, index, visit.firstCluster + index);
    }
  }

  get header(): Qcow2Header {
    return this.layout.header;
  }

  /**
   * Walks the active L1 table from `fromL1`, reading each referenced L2
   * table after checking where it points. Shared by extents() and inspect.
   */
  async *l2Tables(fromL1 = 0): AsyncGenerator<L2TableVisit> {
    const { clusterSize, l2Entries, l1Entries, guestClusters } = this.layout;
    for (let l1Index = fromL1; l1Index < l1Entries; l1Index++) {
      const firstCluster = l1Index * l2Entries;
      const clusters = Math.min(l2Entries, guestClusters - firstCluster);
      const tableOffset = decodeL1Entry(this.#l1, l1Index, clusterSize);
      if (tableOffset === 0) {
        yield { l1Index, firstCluster, clusters, tableOffset, table: undefined };
        continue;
      }
      // Overlaps were refused when the metadata was mapped at open.
      checkL2TableBounds(this.layout, l1Index, tableOffset);
      const bytes = await this.#reader.read(tableOffset, clusterSize);
      yield { l1Index, firstCluster, clusters, tableOffset, table: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
    }
  }

  /** Decodes one entry and checks the host range it names against the file and its metadata. */
  entry(table: DataView, index: number, cluster: number): L2Entry {
    const entry = decodeL2Entry(table, index, this.layout.header);
    if (entry.kind === 'unallocated' || entry.kind === 'zero') return entry;
    const { clusterSize, fileSize, l2Entries } = this.layout;
    const l1Index = Math.floor(cluster / l2Entries);
    const name = (): string => `L2 entry ${index} of L1 entry ${l1Index} (guest cluster ${cluster})`;
    if (entry.hostOffset < clusterSize || entry.hostOffset >= fileSize) {
      throw new Qcow2FormatError(
        'l2_entry',
        `${name()} maps to ${hex(entry.hostOffset)}, outside the data area of the ${fileSize}-byte file`,
        {
          cluster,
          value: hex(entry.hostOffset),
        },
      );
    }
    const end = entry.hostOffset + (entry.kind === 'compressed' ? entry.compressedSize : clusterSize);
    this.#metadata.checkData(entry.hostOffset, end, name, { cluster, l1Index, index });
    return entry;
  }

  extents(fromOffset = 0): AsyncIterable<Extent> {
    checkFromOffset(fromOffset, this.virtualSize);
    return mergeZeros(this.#walk(fromOffset));
  }

  async *#walk(fromOffset: number): AsyncGenerator<Extent> {
    const { clusterSize, l2Entries } = this.layout;
    const subclusterSize = clusterSize / 32;
    const virtualSize = this.virtualSize;
    const chunkSize = this.#chunkSize;
    const ops: Op[] = [];
    // The run being built: guest-contiguous pieces of one kind, and for reads host-contiguous too.
    let run:
      | { kind: 'zero' | 'read'; offset: number; host: number; length: number }
      | { kind: 'compressed'; offset: number; length: number; clusters: CompressedPiece[] }
      | undefined;

    const flush = (): void => {
      if (run === undefined) return;
      if (run.kind === 'compressed') {
        ops.push({ kind: 'compressed', offset: run.offset, length: run.length, clusters: run.clusters });
      } else if (run.kind === 'zero') {
        ops.push({ kind: 'zero', offset: run.offset, length: run.length });
      } else {
        for (let pos = 0; pos < run.length; pos += chunkSize) {
          ops.push({ kind: 'read', offset: run.offset + pos, host: run.host + pos, length: Math.min(chunkSize, run.length - pos) });
        }
      }
      run = undefined;
    };
    const addZero = (start: number, end: number): void => {
      if (run?.kind === 'zero') {
        run.length += end - start;
        return;
      }
      flush();
      run = { kind: 'zero', offset: start, host: 0, length: end - start };
    };
    const addCompressed = (piece: CompressedPiece): void => {
      if (
        run?.kind === 'compressed' &&
        run.offset + run.length === piece.offset &&
        run.length + piece.length <= Math.max(chunkSize, clusterSize)
      ) {
        run.length += piece.length;
        run.clusters.push(piece);
        return;
      }
      flush();
      run = { kind: 'compressed', offset: piece.offset, length: piece.length, clusters: [piece] };
    };
    const addRead = (start: number, end: number, host: number): void => {
      if (run?.kind === 'read' && run.host + run.length === host && run.length + (end - start) <= chunkSize) {
        run.length += end - start;
        return;
      }
      flush();
      run = { kind: 'read', offset: start, host, length: end - start };
    };

    const startCluster = Math.floor(fromOffset / clusterSize);
    for await (const visit of this.l2Tables(Math.floor(startCluster / l2Entries))) {
      const visitStart = Math.max(fromOffset, visit.firstCluster * clusterSize);
      const visitEnd = Math.min(virtualSize, (visit.firstCluster + visit.clusters) * clusterSize);
      if (visit.table === undefined) {
        addZero(visitStart, visitEnd);
        continue;
      }
      const firstIndex = Math.max(0, startCluster - visit.firstCluster);
      for (let index = firstIndex; index < visit.clusters; index++) {
        const cluster = visit.firstCluster + index;
        const guest = cluster * clusterSize;
        const start = Math.max(guest, fromOffset);
        const end = Math.min(guest + clusterSize, virtualSize);
        const entry = this.entry(visit.table, index, cluster);
        switch (entry.kind) {
          case 'unallocated':
          case 'zero':
            addZero(start, end);
            break;
          case 'data':
            addRead(start, end, entry.hostOffset + (start - guest));
            break;
          case 'compressed':
            addCompressed({
              offset: start,
              host: entry.hostOffset,
              compressedSize: entry.compressedSize,
              skip: start - guest,
              length: end - start,
              cluster,
            });
            break;
          case 'subclusters':
            for (let sub = 0; sub < 32; sub++) {
              const subStart = Math.max(start, guest + sub * subclusterSize);
              const subEnd = Math.min(end, guest + (sub + 1) * subclusterSize);
              if (subStart >= subEnd) continue;
              if ((entry.allocated & (1 << sub)) !== 0) addRead(subStart, subEnd, entry.hostOffset + (subStart - guest));
              else addZero(subStart, subEnd);
            }
            break;
        }
      }
      // Drain what this table produced; the open run carries over so holes
      // and contiguous data keep merging across table boundaries.
      yield* this.#execute(ops);
      ops.length = 0;
    }
    flush();
    yield* this.#execute(ops);
  }

  async *#execute(ops: readonly Op[]): AsyncGenerator<Extent> {
    // One read ahead: the next chunk is on its way while the consumer handles
    // this one, which keeps the disk busy at the cost of one more chunk of memory.
    let ahead: { index: number; data: Promise<OpData> } | undefined;
    const fetch = (index: number): Promise<OpData> | undefined => {
      const op = ops[index];
      if (op === undefined || op.kind === 'zero') return undefined;
      const promise = op.kind === 'read' ? this.#readData(op.host, op.length) : this.#decompress(op);
      // Failures surface when the op is reached; until then keep them from being "unhandled".
      promise.catch(() => {});
      return promise;
    };
    for (let index = 0; index < ops.length; index++) {
      const op = ops[index];
      if (op === undefined) break;
      if (op.kind === 'zero') {
        yield op;
        continue;
      }
      const pending = ahead?.index === index ? ahead.data : fetch(index);
      ahead = undefined;
      let next = index + 1;
      while (ops[next]?.kind === 'zero') next++;
      const nextData = fetch(next);
      if (nextData !== undefined) ahead = { index: next, data: nextData };
      if (pending === undefined) continue;
      const { data, chunk } = await pending;
      try {
        // Only a run of compressed clusters larger than the chunk size (2 MiB clusters) takes more than one piece.
        for (let pos = 0; pos < data.length; pos += this.#chunkSize) {
          const piece = data.subarray(pos, Math.min(data.length, pos + this.#chunkSize));
          const pooled = chunk === undefined ? undefined : { chunk, headroom: pos === 0 ? FRAME_HEADROOM : 0 };
          if (this.#detectZeros) yield* splitZeroBlocks(op.offset + pos, piece, this.#zeroBlock, pooled);
          else yield* chunkData(op.offset + pos, piece, this.#chunkSize, pooled);
        }
      } finally {
        // The extents cut from the chunk hold their own references.
        chunk?.release();
      }
    }
  }

  /** Reads guest data; bytes past the end of the file read as zeros, as they do in QEMU. */
  async #readData(host: number, length: number): Promise<OpData> {
    if (this.#reader.readInto === undefined) {
      const bytes = await this.#reader.read(host, length);
      if (bytes.length === length) return { data: bytes, chunk: undefined };
      const padded = new Uint8Array(length);
      padded.set(bytes);
      return { data: padded, chunk: undefined };
    }
    const chunk = this.#pool.acquire();
    const data = chunk.data(length);
    const got = await this.#reader.readInto(host, data);
    if (got < length) data.fill(0, got);
    return { data, chunk };
  }

  /**
   * Decompresses a run of compressed clusters into one pooled chunk. Their
   * compressed bytes usually lie back to back in the file (qemu-img writes
   * them so): then one read fetches them all; scattered ones (possible in a
   * hand-made image) are read one by one, so a hostile layout cannot make a
   * read larger than two chunks.
   */
  async #decompress(op: Extract<Op, { kind: 'compressed' }>): Promise<OpData> {
    const { clusterSize, header } = this.layout;
    let spanStart = Number.POSITIVE_INFINITY;
    let spanEnd = 0;
    let ordered = true;
    let previousEnd = 0;
    for (const piece of op.clusters) {
      if (piece.host < previousEnd) ordered = false;
      previousEnd = piece.host + piece.compressedSize;
      spanStart = Math.min(spanStart, piece.host);
      spanEnd = Math.max(spanEnd, piece.host + piece.compressedSize);
    }
    const span =
      ordered && spanEnd - spanStart <= 2 * this.#chunkSize ? await this.#reader.read(spanStart, spanEnd - spanStart) : undefined;
    const chunk = this.#pool.acquire();
    const data = chunk.data(op.length);
    try {
      for (const piece of op.clusters) {
        // The last sector named by a descriptor may extend past the end of the file.
        const compressed = span
          ? span.subarray(piece.host - spanStart, piece.host - spanStart + piece.compressedSize)
          : await this.#reader.read(piece.host, piece.compressedSize);
        const cluster = decompressCluster(header.compressionType, compressed, clusterSize, { cluster: piece.cluster, host: piece.host });
        data.set(cluster.subarray(piece.skip, piece.skip + piece.length), piece.offset - op.offset);
      }
    } catch (error) {
      chunk.release();
      throw error;
    }
    return { data, chunk };
  }
}
