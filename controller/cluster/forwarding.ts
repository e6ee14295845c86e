/**
 * Forwarding of node actions to the node's owner over NATS request/reply, on
 * `<prefix>.rpc.<ownerId>.<action>` (subjects.ts). The owner answers
 * `accepted` with a subject of its own and acts only once the caller says go
 * there: a caller that has given up (the owner was paused, its request sat in
 * a socket) never says it, so a late request runs nothing, without trusting
 * anyone's clock. While the action runs the owner says `working` every third
 * of the timeout (a power change waits for the machine to settle, far longer
 * than any sane "is the owner there?" timeout), then `ok` or `error`. So
 * silence for `timeoutMs` at any point is UNAVAILABLE naming the owner,
 * however long the action itself takes.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { BmError } from '../errors.ts';
import type { Subjects } from '../events/index.ts';
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

/** The owner could not be reached, or went silent. `started`: it had been told to go, so the action may be done in part. */
export class OwnerUnavailableError extends BmError {
  constructor(owner: ForwardTarget, action: ForwardAction, why: string, started = false) {
    super(
      'unavailable',
      `the node's owner, controller ${owner.id} (API ${owner.apiAddress}), ${why}; ${
        started
          ? `${action} may be done in part: check the node before retrying`
          : `${action} not done; retry, or wait until its heartbeat lapses and another controller takes its nodes over`
      }`,
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
  /** Longest silence before giving up: the caller's for any answer, the owner's for the caller's go. */
  readonly timeoutMs: number;
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
    const request: ForwardRequest<A> = { action, args, from: this.#opts.self };
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
              accepted
                ? new OwnerUnavailableError(owner, action, `stopped answering while at it (silent for ${this.#opts.timeoutMs} ms)`, true)
                : new OwnerUnavailableError(owner, action, `did not answer within ${this.#opts.timeoutMs} ms`),
            ),
          this.#opts.timeoutMs,
        );
      };
      let sub: Subscription;
      try {
        sub = this.#nc.subscribe(inbox, {
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
            if (reply.kind === 'accepted') {
              // Still waiting (this callback would not run after finish): from here on we wait for the outcome.
              accepted = true;
              try {
                this.#nc.publish(reply.confirm);
              } catch (goErr) {
                return finish(new OwnerUnavailableError(owner, action, `could not be told to go (${String(goErr)})`));
              }
              return arm();
            }
            if (reply.kind === 'working') return arm();
            if (reply.kind === 'error') return finish(new RemoteError(reply.error, owner.id));
            finish(null, reply.result as ForwardResults[A]);
          },
        });
      } catch (err) {
        // Our own connection is closed or draining (this controller is stopping).
        reject(new OwnerUnavailableError(owner, action, `could not be asked (${err instanceof Error ? err.message : String(err)})`));
        return;
      }
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
        const run = this.#answer(msg, handler)
          // Answering can only fail on our own connection (closing): the caller then hears silence and says so.
          .catch((answerErr: unknown) => this.#log.warn({ err: answerErr }, 'could not answer a forwarded action'))
          .finally(() => this.#inFlight.delete(run));
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
    if (!(await this.#go(msg))) {
      // The request waited (we were paused, or slow) until its caller gave up and told its user UNAVAILABLE.
      this.#log.warn(
        { action: request.action, from: request.from, args: request.args },
        'dropped a forwarded action its caller gave up on',
      );
      return;
    }
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

  /** Says `accepted` and waits for the caller's go; false when it does not come within the timeout. */
  #go(msg: Msg): Promise<boolean> {
    const confirm = createInbox();
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        sub.unsubscribe();
        resolve(false);
      }, this.#opts.timeoutMs);
      const sub = this.#nc.subscribe(confirm, {
        max: 1,
        callback: () => {
          clearTimeout(timer);
          resolve(true);
        },
      });
      msg.respond(encodeReply({ kind: 'accepted', confirm }));
    });
  }

  /** Takes no new forwards and waits for the ones running to answer. */
  async close(): Promise<void> {
    this.#sub?.unsubscribe();
    this.#sub = null;
    await Promise.allSettled([...this.#inFlight]);
  }
}
