/**
 * The steps every agent flow shares: arm a token for this boot, network-boot
 * the node into the ramdisk through its BMC, wait for the agent to call back,
 * and at the end power it off or boot it from its disk. Each wait has a
 * deadline and ends early when the task is stopped.
 */
import { BmError, TimeoutError } from '../errors.ts';
import type { AgentTokenStore } from '../agents/index.ts';
import type { EventBus } from '../events/index.ts';
import { CallbackWaker } from './callback-waker.ts';
import { AgentLink, type AgentConnection } from '../deploy/index.ts';
import type { PowerControl, PowerState } from '../drivers/power/index.ts';
import type { NodeRecord } from '../nodes/index.ts';
import type { BmcAccess } from './bmc-access.ts';
import type { ProvisionEvent } from './states.ts';
import type { TaskContext } from './task.ts';

export interface AgentBootOptions {
  /** How long a booted node may take to call back (wait-callback). */
  readonly callbackTimeoutMs: number;
  /** How long an agent token lives (covers the whole operation). */
  readonly tokenTtlMs: number;
  /** How long to wait for the BMC to report the power state asked for. */
  readonly settleTimeoutMs: number;
  readonly pollMs: number;
  /**
   * Where agents' callbacks are heard (agent.called-back): a wait for one then reads the node when it is heard, and
   * polls only every CALLBACK_POLL_FACTOR × pollMs in case the event was lost. Absent: polls every pollMs.
   */
  readonly events?: EventBus;
}

/** How much slower a wait that hears callbacks on the bus polls the database than one that does not. */
const CALLBACK_POLL_FACTOR = 10;

export interface AgentSession {
  readonly address: string;
  readonly token: string;
  /**
   * The one connection the operation uses for every call to this agent, the image stream's
   * attempts included; redialled only when it broke. The flow closes it when done (closeAgent).
   */
  readonly link: AgentLink;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });

/**
 * The node's BMC as a task may use it: every command first checks the task's fence, so a task that was
 * fenced while a database write hung does not power-cycle a node a peer may own by the time it returns.
 */
function fenced(control: PowerControl, ctx: TaskContext): PowerControl {
  return {
    getPowerState: async () => {
      ctx.checkFence();
      return control.getPowerState();
    },
    setPowerState: async (target) => {
      ctx.checkFence();
      return control.setPowerState(target);
    },
    setBootDevice: async (device, options) => {
      ctx.checkFence();
      return control.setBootDevice(device, options);
    },
    getBootDevice: async () => {
      ctx.checkFence();
      return control.getBootDevice();
    },
    close: () => control.close(),
  };
}

/** A subscription to a node's callbacks, opened before its power-on. */
interface Listening {
  readonly waker: CallbackWaker;
  /** NATS confirmed the subscription before the power-on. */
  readonly subscribed: boolean;
}

export class AgentBoot {
  /** Subscriptions opened by bootRamdisk, for the waitForAgent that follows, by node. */
  readonly #listening = new Map<string, Listening>();
  readonly #bmc: BmcAccess;
  readonly #tokens: AgentTokenStore;
  readonly #opts: AgentBootOptions;

  constructor(bmc: BmcAccess, tokens: AgentTokenStore, opts: AgentBootOptions) {
    this.#bmc = bmc;
    this.#tokens = tokens;
    this.#opts = opts;
  }

  async #settle(ctx: TaskContext, control: PowerControl, want: PowerState): Promise<PowerState> {
    const deadline = Date.now() + this.#opts.settleTimeoutMs;
    for (;;) {
      const state = await control.getPowerState();
      if (state === want) return state;
      if (Date.now() >= deadline)
        throw new TimeoutError(
          `node ${ctx.node().uuid}: asked for power ${want}, the BMC still reports ${state} after ${this.#opts.settleTimeoutMs / 1000} s`,
          { node: ctx.node().uuid },
        );
      ctx.signal.throwIfAborted();
      await sleep(this.#opts.pollMs, ctx.signal);
    }
  }

  /**
   * Arms a token, sets a one-time PXE boot and powers the node on (or cycles it). Returns when the BMC did so.
   * With `then`, that transition also records the power state: one write where two were (a boot storm's deploys
   * were half of the database's statements).
   */
  async bootRamdisk(ctx: TaskContext, purpose: string, then?: ProvisionEvent): Promise<Date> {
    const node = ctx.node();
    ctx.checkFence();
    await this.#tokens.issue(node.uuid, this.#opts.tokenTtlMs);
    // Heartbeats older than this belong to an earlier boot.
    const since = new Date();
    // Listening before the power-on: this boot's agent (it needs the token just armed) is then heard, not polled for.
    const listening = await this.#listen(ctx);
    try {
      await this.#powerIntoRamdisk(ctx, purpose, then);
    } catch (err) {
      listening?.waker.close();
      throw err;
    }
    if (listening) this.#keepListening(node.uuid, listening);
    return since;
  }

  async #powerIntoRamdisk(ctx: TaskContext, purpose: string, then?: ProvisionEvent): Promise<void> {
    const node = ctx.node();
    await this.#bmc.with(
      node,
      async (bmc) => {
        const control = fenced(bmc, ctx);
        await control.setBootDevice('pxe', { persistent: false, uefi: true });
        const was = await control.getPowerState();
        await control.setPowerState(was === 'on' ? 'reboot' : 'on');
        await this.#settle(ctx, control, 'on');
      },
      `bootdev pxe + power on (${purpose})`,
    );
    if (then) await ctx.advance(then, { powerState: 'on' });
    else await ctx.record({ powerState: 'on' });
    ctx.publish('power.changed', { target: 'on', purpose, bootDevice: 'pxe' });
  }

  /** Subscribes to the node's callbacks; `subscribed` once NATS confirmed it (bounded: a NATS that is away must not hold the flow up). */
  async #listen(ctx: TaskContext): Promise<Listening | null> {
    const events = this.#opts.events;
    if (!events) return null;
    const waker = new CallbackWaker(events.subscribe(ctx.node().uuid));
    const subscribed = await Promise.race([
      events.flush().then(
        () => true,
        () => false,
      ),
      sleep(this.#opts.pollMs, ctx.signal).then(() => false),
    ]);
    return { waker, subscribed };
  }

  /** Kept for this boot's waitForAgent; closed if no wait takes it within the callback timeout (its flow failed first). */
  #keepListening(nodeUuid: string, listening: Listening): void {
    this.#listening.get(nodeUuid)?.waker.close();
    this.#listening.set(nodeUuid, listening);
    setTimeout(() => {
      if (this.#listening.get(nodeUuid) !== listening) return;
      this.#listening.delete(nodeUuid);
      listening.waker.close();
    }, this.#opts.callbackTimeoutMs).unref();
  }

  /** Waits for the agent of this boot to heartbeat; its address and the token to call it with. */
  async waitForAgent(ctx: TaskContext, since: Date): Promise<AgentSession> {
    const uuid = ctx.node().uuid;
    const kept = this.#listening.get(uuid);
    this.#listening.delete(uuid);
    const listening = kept ?? (await this.#listen(ctx));
    try {
      // Listening since before the power-on, a callback cannot have come unheard: the first read waits for it (or the slow poll).
      return await this.#awaitCallback(ctx, since, listening?.waker ?? null, kept?.subscribed === true);
    } finally {
      listening?.waker.close();
    }
  }

  async #awaitCallback(ctx: TaskContext, since: Date, waker: CallbackWaker | null, heardSincePowerOn: boolean): Promise<AgentSession> {
    const deadline = Date.now() + this.#opts.callbackTimeoutMs;
    for (let first = true; ; first = false) {
      ctx.signal.throwIfAborted();
      if (first && heardSincePowerOn && waker) {
        await waker.next(Math.min(this.#opts.pollMs * CALLBACK_POLL_FACTOR, this.#opts.callbackTimeoutMs), ctx.signal);
        ctx.signal.throwIfAborted();
      }
      const node = await ctx.refresh();
      if (node.agentAddress && node.agentSeenAt && node.agentSeenAt.getTime() >= since.getTime()) {
        const token = await this.#tokens.reveal(node.uuid);
        if (!token)
          throw new BmError('failed-precondition', `node ${node.uuid}: the agent called back but its token expired; retry the operation`, {
            node: node.uuid,
          });
        const address = node.agentAddress;
        return { address, token, link: new AgentLink(address, token) };
      }
      if (Date.now() >= deadline) {
        throw new TimeoutError(
          `node ${node.uuid}: the deploy agent did not call back within ${Math.round(this.#opts.callbackTimeoutMs / 1000)} s (check that the node PXE-boots on the provisioning network and reaches the controller)`,
          { node: node.uuid },
        );
      }
      const wait = Math.min(waker ? this.#opts.pollMs * CALLBACK_POLL_FACTOR : this.#opts.pollMs, Math.max(0, deadline - Date.now()));
      if (waker) await waker.next(wait, ctx.signal);
      else await sleep(wait, ctx.signal);
    }
  }

  /** The agent of this boot as the node row knows it (a takeover mid-stream): its address and the armed token. */
  async liveAgent(ctx: TaskContext): Promise<AgentSession> {
    const node = await ctx.refresh();
    const token = await this.#tokens.reveal(node.uuid);
    if (!node.agentAddress || !token)
      throw new BmError('failed-precondition', `node ${node.uuid}: no live agent to continue with (no address or token)`, {
        node: node.uuid,
      });
    const address = node.agentAddress;
    return { address, token, link: new AgentLink(address, token) };
  }

  /** Whether this operation's agent is known: a token armed for it, and a heartbeat since. */
  async hasAgent(node: NodeRecord): Promise<boolean> {
    return node.agentAddress !== null && node.agentSeenAt !== null && (await this.#tokens.reveal(node.uuid)) !== null;
  }

  /** Whether a token is armed (the node was powered into the ramdisk for this operation). */
  async armed(nodeUuid: string): Promise<boolean> {
    return (await this.#tokens.reveal(nodeUuid)) !== null;
  }

  /** Powers the node off and forgets this boot's token. */
  async powerOff(ctx: TaskContext): Promise<void> {
    const node = ctx.node();
    await this.#bmc.with(
      node,
      async (bmc) => {
        const control = fenced(bmc, ctx);
        if ((await control.getPowerState()) === 'off') return;
        await control.setPowerState('off');
        await this.#settle(ctx, control, 'off');
      },
      'power off',
    );
    ctx.checkFence();
    await this.#tokens.revoke(node.uuid);
    await ctx.record({ powerState: 'off' });
    ctx.publish('power.changed', { target: 'off' });
  }

  /** Makes the disk the boot device from now on and power-cycles the node into it. */
  async bootFromDisk(ctx: TaskContext): Promise<void> {
    const node = ctx.node();
    ctx.checkFence();
    await this.#tokens.revoke(node.uuid);
    await this.#bmc.with(
      node,
      async (bmc) => {
        const control = fenced(bmc, ctx);
        await control.setBootDevice('disk', { persistent: true, uefi: true });
        const was = await control.getPowerState();
        await control.setPowerState(was === 'on' ? 'reboot' : 'on');
        await this.#settle(ctx, control, 'on');
      },
      'bootdev disk + power cycle',
    );
    await ctx.record({ powerState: 'on' });
    ctx.publish('power.changed', { target: 'on', bootDevice: 'disk' });
  }

  /** One step on the session's connection, which stays open for the next (closeAgent ends it). */
  async withAgent<T>(session: AgentSession, work: (agent: AgentConnection) => Promise<T>): Promise<T> {
    return session.link.call(work);
  }

  /** Ends the session's connection; the flow calls it once it is done with the agent, even on failure. */
  closeAgent(session: AgentSession): void {
    session.link.close();
  }
}
