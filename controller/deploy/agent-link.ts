/**
 * One operation's connection to its agent, kept for all of it: the calls
 * before the image, every attempt of the image stream and the config drive
 * after it go over one HTTP/2 connection. A failed call leaves the
 * connection in place unless the connection itself broke (the agent
 * restarted, the network dropped, keepalive gave up): then the next call
 * dials afresh. A fresh channel, not grpc-js's own reconnect on the old one,
 * because a channel that failed to connect waits out a growing backoff (up
 * to two minutes) during which calls fail without dialling, which would
 * spend a deploy's retry budget on attempts that never reached the agent.
 */
import { connectAgent, type AgentConnection } from './agent-client.ts';
import { DEFAULT_TUNING, type StreamTuning } from './tuning.ts';

export type AgentConnector = (address: string, token: string, tuning: StreamTuning) => AgentConnection;

export class AgentLink {
  readonly address: string;
  readonly token: string;
  /** The tuning the connection is dialled with (message size limit and receive window). */
  readonly tuning: StreamTuning;
  readonly #open: AgentConnector;
  #connection: AgentConnection | undefined;
  #dials = 0;
  #closed = false;

  constructor(address: string, token: string, tuning: StreamTuning = DEFAULT_TUNING, open: AgentConnector = connectAgent) {
    this.address = address;
    this.token = token;
    this.tuning = tuning;
    this.#open = open;
  }

  /** The connection, dialled on first use and after a break. */
  get connection(): AgentConnection {
    if (this.#closed) throw new Error(`the link to agent ${this.address} is closed`);
    if (!this.#connection) {
      this.#connection = this.#open(this.address, this.token, this.tuning);
      this.#dials++;
    }
    return this.#connection;
  }

  /** Connections dialled so far (1 for an operation whose connection never broke). */
  get dials(): number {
    return this.#dials;
  }

  /**
   * After a failed call: drops the connection if it is no longer up, so the
   * next call dials again. Returns whether it did.
   */
  dropIfBroken(): boolean {
    const connection = this.#connection;
    if (!connection || connection.rpc.connected()) return false;
    this.#connection = undefined;
    connection.close();
    return true;
  }

  /** Runs one call on the connection; a failure that broke the connection drops it. */
  async call<T>(work: (agent: AgentConnection) => Promise<T>): Promise<T> {
    try {
      return await work(this.connection);
    } catch (error) {
      this.dropIfBroken();
      throw error;
    }
  }

  close(): void {
    this.#closed = true;
    this.#connection?.close();
    this.#connection = undefined;
  }
}
