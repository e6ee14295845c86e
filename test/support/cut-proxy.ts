/**
 * A TCP proxy on loopback between one controller and its MariaDB that a test
 * can cut (a partition: bytes either way are held, nothing is lost) and heal
 * (the held bytes are delivered, late, as TCP would after a partition). It
 * notes each statement the client sends (MySQL COM_QUERY and COM_STMT_PREPARE
 * packets, sequence id 0) with the time it left the client, so a test can
 * say what a controller sent while it was cut off.
 */
import net from 'node:net';

export interface SentStatement {
  /** Date.now() when the proxy read it from the client. */
  readonly at: number;
  readonly sql: string;
}

const COM_QUERY = 0x03;
const COM_STMT_PREPARE = 0x16;

class Link {
  readonly client: net.Socket;
  readonly server: net.Socket;
  readonly up: Buffer[] = [];
  readonly down: Buffer[] = [];
  #pending = Buffer.alloc(0);

  constructor(client: net.Socket, server: net.Socket) {
    this.client = client;
    this.server = server;
  }

  /** Reassembles client packets (3-byte length, sequence id, payload) and yields the statements among them. */
  statements(chunk: Buffer): string[] {
    this.#pending = Buffer.concat([this.#pending, chunk]);
    const out: string[] = [];
    while (this.#pending.length >= 4) {
      const length = this.#pending.readUIntLE(0, 3);
      if (this.#pending.length < 4 + length) break;
      const seq = this.#pending[3];
      const command = this.#pending[4];
      if (seq === 0 && length > 0 && (command === COM_QUERY || command === COM_STMT_PREPARE))
        out.push(this.#pending.subarray(5, 4 + length).toString('utf8'));
      this.#pending = this.#pending.subarray(4 + length);
    }
    return out;
  }
}

export class CutProxy {
  readonly statements: SentStatement[] = [];
  readonly #server: net.Server;
  readonly #links = new Set<Link>();
  readonly #target: { readonly port: number; readonly host: string };
  #cut = false;
  #cutOn: RegExp | null = null;
  #port = 0;

  private constructor(targetPort: number, targetHost: string) {
    this.#target = { port: targetPort, host: targetHost };
    this.#server = net.createServer((client) => this.#accept(client));
  }

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<CutProxy> {
    const proxy = new CutProxy(targetPort, targetHost);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(0, '127.0.0.1', () => resolve());
    });
    proxy.#port = (proxy.#server.address() as net.AddressInfo).port;
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  #accept(client: net.Socket): void {
    const upstream = net.connect(this.#target.port, this.#target.host);
    const link = new Link(client, upstream);
    this.#links.add(link);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.#links.delete(link);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.on('data', (chunk: Buffer) => {
      for (const sql of link.statements(chunk)) {
        this.statements.push({ at: Date.now(), sql });
        if (this.#cutOn?.test(sql)) {
          this.#cutOn = null;
          this.#cut = true;
        }
      }
      if (this.#cut) link.up.push(chunk);
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (this.#cut) link.down.push(chunk);
      else client.write(chunk);
    });
  }

  /** From now on nothing passes either way (held, not dropped). */
  cut(): void {
    this.#cut = true;
  }

  /** Cuts at the first statement matching `pattern`, holding that statement itself. */
  cutOn(pattern: RegExp): void {
    this.#cutOn = pattern;
  }

  get isCut(): boolean {
    return this.#cut;
  }

  /** Delivers everything held, in order, and forwards again. */
  heal(): void {
    this.#cut = false;
    for (const link of this.#links) {
      for (const chunk of link.up.splice(0)) link.server.write(chunk);
      for (const chunk of link.down.splice(0)) link.client.write(chunk);
    }
  }

  async close(): Promise<void> {
    for (const link of this.#links) {
      link.client.destroy();
      link.server.destroy();
    }
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
