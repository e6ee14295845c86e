/**
 * Forwarding of node actions to the node's owner over NATS request/reply, on
 * `<prefix>.rpc.<ownerId>.<action>` (subjects.ts). The owner answers
 * `accepted` at once and `working` every third of the timeout while the
 * action runs (a power change waits for the machine to settle, far longer
 * than any sane "is the owner there?" timeout), then `ok` or `error`. So the
 * caller tells a dead or paused owner from a slow action: silence for
 * `timeoutMs` at any point is UNAVAILABLE naming the owner, however long the
 * action itself takes.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { BmError } from '../errors.ts';
import type { Subjects } from '../events/subjects.ts';
import {
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  errorBody,
  type ForwardAction,
  type ForwardArgs,
  type ForwardReply,
  type ForwardRequest,
  type ForwardResults,
  RemoteError,
} from './forward-codec.ts';

/** Who a forward goes to: the ring's owner, as its heartbeat row names it. */
export interface ForwardTarget {
  readonly id: string;
  readonly apiAddress: string;
}

/** The owner could not be reached, or went silent: nothing is known to have run. */
export class OwnerUnavailableError extends BmError {
  constructor(owner: ForwardTarget, action: ForwardAction, why: string) {
    super(
      'unavailable',
      `the node's owner, controller ${owner.id} (API ${owner.apiAddress}), ${why}; ${action} not done; retry, or wait until its heartbeat lapses and another controller takes its nodes over`,
      { owner: owner.id, ownerApi: owner.apiAddress, action },
    );
  }
}

/** Runs a forwarded action on this controller (the owner): what the local API would have run. */
export type ForwardHandler = <A extends ForwardAction>(action: A, args: ForwardArgs[A], from: string) => Promise<ForwardResults[A]>;

/** The caller's side, as the node router sees it (a fake in unit tests). */
export interface ForwardClient {
  call<A extends ForwardAction>(owner: ForwardTarget, action: A, args: ForwardArgs[A]): Promise<ForwardResults[A]>;
}

export interface ForwarderOptions {
  readonly self: string;
  readonly subjects: Subjects;
  /** Longest silence from the owner before the caller gives up (no `accepted`, no `working`, no answer). */
  readonly timeoutMs: number;
  /** How far peers' clocks may differ when a paused owner judges whether a request has expired. */
  readonly clockSkewMs?: number;
}

export class Forwarder implements ForwardClient {
  readonly #nc: NatsConnection;
  readonly #opts: ForwarderOptions;
  readonly #log: Logger;
  #sub: Subscription | null = null;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(nc: NatsConnection, opts: ForwarderOptions, log: Logger) {
    this.#nc = nc;
    this.#opts = opts;
    this.#log = log;
  }

  call<A extends ForwardAction>(owner: ForwardTarget, action: A, args: ForwardArgs[A]): Promise<ForwardResults[A]> {
    const request: ForwardRequest<A> = { action, args, from: this.#opts.self, expiresAt: Date.now() + this.#opts.timeoutMs };
    const inbox = createInbox();
    return new Promise<ForwardResults[A]>((resolve, reject) => {
      let accepted = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (err: Error | null, result?: ForwardResults[A]): void => {
        clearTimeout(timer);
        sub.unsubscribe();
        if (err) reject(err);
        else resolve(result as ForwardResults[A]);
      };
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(
          () =>
            finish(
              new OwnerUnavailableError(
                owner,
                action,
                accepted
                  ? `stopped answering (silent for ${this.#opts.timeoutMs} ms while working)`
                  : `did not answer within ${this.#opts.timeoutMs} ms`,
              ),
            ),
          this.#opts.timeoutMs,
        );
      };
      const sub = this.#nc.subscribe(inbox, {
        callback: (err, msg) => {
          if (err) return finish(new OwnerUnavailableError(owner, action, `could not be asked (${err.message})`));
          // The server's "no responders" status: nobody subscribes to the owner's subject (it is not running).
          if (msg.headers?.code === 503) return finish(new OwnerUnavailableError(owner, action, 'is not listening on NATS'));
          let reply: ForwardReply;
          try {
            reply = decodeReply(msg.data);
          } catch (decodeErr) {
            return finish(
              new BmError('internal', `controller ${owner.id} answered a forwarded ${action} with a bad frame`, {}, { cause: decodeErr }),
            );
          }
          if (reply.kind === 'accepted' || reply.kind === 'working') {
            accepted = true;
            return arm();
          }
          if (reply.kind === 'error') return finish(new RemoteError(reply.error, owner.id));
          finish(null, reply.result as ForwardResults[A]);
        },
      });
      arm();
      try {
        this.#nc.publish(this.#opts.subjects.rpc(owner.id, action), encodeRequest(request), { reply: inbox });
      } catch (err) {
        finish(new OwnerUnavailableError(owner, action, `could not be asked (${err instanceof Error ? err.message : String(err)})`));
      }
    });
  }

  /** Answers actions forwarded to this controller. */
  serve(handler: ForwardHandler): void {
    this.#sub = this.#nc.subscribe(this.#opts.subjects.rpcOf(this.#opts.self), {
      callback: (err, msg) => {
        if (err) {
          this.#log.warn({ err }, 'forwarded-action subscription failed');
          return;
        }
        const run = this.#answer(msg, handler).finally(() => this.#inFlight.delete(run));
        this.#inFlight.add(run);
      },
    });
  }

  async #answer(msg: Msg, handler: ForwardHandler): Promise<void> {
    if (!msg.reply) return;
    let request: ForwardRequest;
    try {
      request = decodeRequest(msg.data);
    } catch (err) {
      msg.respond(encodeReply({ kind: 'error', error: errorBody(err) }));
      return;
    }
    // A request that waited in our socket while we were paused: its caller was told UNAVAILABLE, so acting now would surprise it.
    if (Date.now() > request.expiresAt + (this.#opts.clockSkewMs ?? 2000)) {
      this.#log.warn(
        { action: request.action, from: request.from, args: request.args },
        'dropped a forwarded action its caller gave up on',
      );
      return;
    }
    msg.respond(encodeReply({ kind: 'accepted' }));
    const keepalive = setInterval(() => msg.respond(encodeReply({ kind: 'working' })), Math.max(50, Math.floor(this.#opts.timeoutMs / 3)));
    try {
      const result = await handler(request.action, request.args as never, request.from);
      msg.respond(encodeReply({ kind: 'ok', result }));
    } catch (err) {
      msg.respond(encodeReply({ kind: 'error', error: errorBody(err) }));
    } finally {
      clearInterval(keepalive);
    }
  }

  /** Takes no new forwards and waits for the ones running to answer. */
  async close(): Promise<void> {
    this.#sub?.unsubscribe();
    this.#sub = null;
    await Promise.allSettled([...this.#inFlight]);
  }
}
