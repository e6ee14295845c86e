/**
 * A TCP proxy between a gRPC client and server that understands HTTP/2 just
 * enough to steer the client's sending: it keeps the server's WINDOW_UPDATE
 * frames from the client (so the client's flow-control window is what the
 * test grants), lets the test send the client frames of its own between the
 * server's frames, stop reading from the client (so the client's socket
 * writes back up), and records every byte the client sent.
 */
import * as net from 'node:net';

const CLIENT_PREFACE_BYTES = 24;
const FRAME_HEADER_BYTES = 9;
const FRAME_DATA = 0x0;
const FRAME_WINDOW_UPDATE = 0x8;

/** Splits a byte stream into HTTP/2 frames, after `skip` bytes of preface. */
class FrameSplitter {
  #pending = Buffer.alloc(0);
  #skip: number;
  constructor(skip: number) {
    this.#skip = skip;
  }
  push(chunk: Buffer): Buffer[] {
    this.#pending = Buffer.concat([this.#pending, chunk]);
    const frames: Buffer[] = [];
    if (this.#skip > 0) {
      const skipped = Math.min(this.#skip, this.#pending.length);
      this.#skip -= skipped;
      this.#pending = this.#pending.subarray(skipped);
    }
    while (this.#pending.length >= FRAME_HEADER_BYTES) {
      const length = this.#pending.readUIntBE(0, 3);
      if (this.#pending.length < FRAME_HEADER_BYTES + length) break;
      frames.push(this.#pending.subarray(0, FRAME_HEADER_BYTES + length));
      this.#pending = this.#pending.subarray(FRAME_HEADER_BYTES + length);
    }
    return frames;
  }
}

function frame(type: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([header, payload]);
}

export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment, 0);
  return frame(FRAME_WINDOW_UPDATE, streamId, payload);
}

export class H2FrameProxy {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #client: net.Socket | undefined;
  /** Everything the client sent, as received. */
  readonly fromClient: Buffer[] = [];
  /** Payload bytes of the DATA frames the client sent. */
  clientDataBytes = 0;
  /** Whether the client's bytes still go on to the server. */
  forwardToServer = true;
  #onClientData: (() => void) | undefined;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(serverPort: number): Promise<H2FrameProxy> {
    const proxy = new H2FrameProxy(net.createServer());
    proxy.#server.on('connection', (client) => proxy.#accept(client, serverPort));
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  #accept(client: net.Socket, serverPort: number): void {
    if (this.#client) {
      client.destroy();
      return;
    }
    this.#client = client;
    const upstream = net.connect(serverPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => this.#sockets.delete(socket));
    }
    const fromClient = new FrameSplitter(CLIENT_PREFACE_BYTES);
    client.on('data', (chunk: Buffer) => {
      this.fromClient.push(chunk);
      for (const f of fromClient.push(chunk)) if (f[3] === FRAME_DATA) this.clientDataBytes += f.length - FRAME_HEADER_BYTES;
      if (this.forwardToServer) upstream.write(chunk);
      this.#onClientData?.();
    });
    const fromServer = new FrameSplitter(0);
    upstream.on('data', (chunk: Buffer) => {
      // Whole frames only, so a frame of the test's own always lands between two of the server's.
      for (const f of fromServer.push(chunk)) if (f[3] !== FRAME_WINDOW_UPDATE) client.write(f);
    });
  }

  /** Sends the client a frame as if the server had. */
  toClient(bytes: Buffer): void {
    if (!this.#client) throw new Error('no client connected');
    this.#client.write(bytes);
  }

  /** Stops (false) or resumes (true) reading what the client sends. */
  readClient(reading: boolean): void {
    if (!this.#client) throw new Error('no client connected');
    if (reading) this.#client.resume();
    else this.#client.pause();
  }

  /** Resolves once the client has sent `bytes` of DATA payload; rejects after `ms`. */
  async clientDataReached(bytes: number, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.clientDataBytes < bytes) {
      if (Date.now() > deadline) throw new Error(`the client sent ${this.clientDataBytes} DATA bytes, not ${bytes}, within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 20);
        this.#onClientData = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
