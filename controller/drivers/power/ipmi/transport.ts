/**
 * One UDP socket shared by every session of a pool. Datagrams are handed to
 * the listeners registered for the sender's address and port; whatever no
 * listener claims is counted and dropped.
 */
import dgram from 'node:dgram';

/** Returns true when the datagram was meant for this listener (even if it was then rejected). */
export type DatagramListener = (datagram: Uint8Array) => boolean;

export interface TransportOptions {
  readonly bindAddress?: string;
  readonly receiveBufferBytes?: number;
}

export class UdpTransport {
  readonly #socket: dgram.Socket;
  readonly #ready: Promise<void>;
  readonly #listeners = new Map<string, Set<DatagramListener>>();
  #closed = false;
  received = 0;
  unclaimed = 0;

  constructor(options: TransportOptions = {}) {
    this.#socket = dgram.createSocket({ type: 'udp4', recvBufferSize: options.receiveBufferBytes ?? 4 * 1024 * 1024 });
    this.#socket.on('message', (msg, rinfo) => this.#dispatch(msg, `${rinfo.address}:${rinfo.port}`));
    // An ICMP error on one BMC must not take the shared socket down: the sender times out instead.
    this.#socket.on('error', () => undefined);
    this.#ready = new Promise((resolve) => this.#socket.bind(0, options.bindAddress ?? '0.0.0.0', () => resolve()));
    this.#socket.unref();
  }

  #dispatch(msg: Buffer, key: string): void {
    this.received++;
    const bytes = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
    for (const listener of this.#listeners.get(key) ?? []) {
      if (listener(bytes)) return;
    }
    this.unclaimed++;
  }

  listen(address: string, port: number, listener: DatagramListener): () => void {
    const key = `${address}:${port}`;
    let set = this.#listeners.get(key);
    if (!set) this.#listeners.set(key, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.#listeners.get(key) === set) this.#listeners.delete(key);
    };
  }

  async send(address: string, port: number, bytes: Uint8Array): Promise<void> {
    await this.#ready;
    if (this.#closed) return;
    await new Promise<void>((resolve) => this.#socket.send(bytes, port, address, () => resolve()));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#ready;
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }
}
