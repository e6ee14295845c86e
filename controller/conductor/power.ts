/**
 * Power and boot-device work on nodes, and the `manage` verification, for the
 * API. Every change runs under the node's reservation; every observed change
 * is recorded and published. Passwords are decrypted here, handed to the
 * driver and never kept.
 */
import type { Logger } from 'pino';
import { BmError, ValidationError } from '../errors.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeStore } from '../nodes/store.ts';
import type { NodeRecord } from '../nodes/types.ts';
import type { SecretBox } from '../secrets/secret-box.ts';
import type { BootDevice, BootDeviceSetting, PowerControl, PowerControlFactory, PowerState, PowerTarget } from '../drivers/power/types.ts';
import { withNodeReservation } from './reservation.ts';
import { nextState, type ProvisionEvent } from './states.ts';

const TARGETS: readonly PowerTarget[] = ['on', 'off', 'reboot', 'soft-off'];
const DEVICES: readonly BootDevice[] = ['pxe', 'disk'];

export interface PowerConductorOptions {
  readonly controllerId: string;
  /** How long to wait for a node to reach the state asked for (soft-off takes an OS shutdown). */
  readonly settleTimeoutMs: number;
  readonly settlePollMs: number;
}

export class PowerConductor {
  readonly #store: NodeStore;
  readonly #secrets: SecretBox;
  readonly #events: EventBus;
  readonly #factory: PowerControlFactory;
  readonly #opts: PowerConductorOptions;
  readonly #log: Logger;
  readonly #background = new Set<Promise<void>>();

  constructor(store: NodeStore, secrets: SecretBox, events: EventBus, factory: PowerControlFactory, opts: PowerConductorOptions, log: Logger) {
    this.#store = store;
    this.#secrets = secrets;
    this.#events = events;
    this.#factory = factory;
    this.#opts = opts;
    this.#log = log;
  }

  async #node(id: string): Promise<NodeRecord> {
    if (id.length === 0 || id.length > 255) throw new ValidationError('id', 'must be a node uuid or name');
    const node = await this.#store.findNode(id);
    if (!node) throw new BmError('not-found', `node ${id} not found`, { id });
    return node;
  }

  async #control(node: NodeRecord): Promise<PowerControl> {
    if (!node.pmAddress) throw new BmError('failed-precondition', `node ${node.uuid} has no BMC address; set it with \`bmctl node update ${node.uuid} --pm-address ...\``, { node: node.uuid });
    const sealed = await this.#store.sealedPassword(node.uuid);
    if (!sealed || sealed.length === 0) throw new BmError('failed-precondition', `node ${node.uuid} has no BMC password; set it with \`bmctl node update ${node.uuid} --pm-password ...\``, { node: node.uuid });
    return this.#factory({ nodeUuid: node.uuid, driver: node.powerDriver, address: node.pmAddress, port: node.pmPort, username: node.pmUser, password: this.#secrets.decrypt(sealed, node.uuid) });
  }

  async #withControl<T>(node: NodeRecord, work: (control: PowerControl) => Promise<T>): Promise<T> {
    const control = await this.#control(node);
    try {
      return await work(control);
    } finally {
      await control.close().catch(() => undefined);
    }
  }

  async #observe(node: NodeRecord, state: PowerState): Promise<void> {
    if (node.powerState === state) return;
    await this.#store.recordState(node.uuid, { powerState: state });
    this.#events.publish({ nodeUuid: node.uuid, type: 'power.changed', powerState: state, provisionState: node.provisionState, details: { was: node.powerState } });
  }

  /** Reads the power state from the BMC now, and records it. */
  async powerState(id: string): Promise<PowerState> {
    const node = await this.#node(id);
    const state = await this.#withControl(node, (c) => c.getPowerState());
    await this.#observe(node, state);
    return state;
  }

  async setPowerState(id: string, target: string): Promise<NodeRecord> {
    if (!(TARGETS as readonly string[]).includes(target)) throw new ValidationError('target', `must be one of ${TARGETS.join(', ')}`);
    const node = await this.#node(id);
    return withNodeReservation(this.#store, node.uuid, this.#opts.controllerId, async () => {
      const want: PowerState = target === 'on' || target === 'reboot' ? 'on' : 'off';
      await this.#store.recordState(node.uuid, { targetPowerState: want });
      try {
        const reached = await this.#withControl(node, async (c) => {
          await c.setPowerState(target as PowerTarget);
          return this.#settle(c, want);
        });
        await this.#store.recordState(node.uuid, { targetPowerState: null, powerState: reached, lastError: reached === want ? null : `asked for power ${target}, node is still ${reached}` });
        if (reached !== node.powerState || target === 'reboot') {
          this.#events.publish({ nodeUuid: node.uuid, type: 'power.changed', powerState: reached, provisionState: node.provisionState, details: { target, was: node.powerState } });
        }
      } catch (err) {
        await this.#store.recordState(node.uuid, { targetPowerState: null, lastError: err instanceof Error ? err.message : String(err) });
        throw err;
      }
      return (await this.#store.findNode(node.uuid)) ?? node;
    });
  }

  async #settle(control: PowerControl, want: PowerState): Promise<PowerState> {
    const deadline = Date.now() + this.#opts.settleTimeoutMs;
    for (;;) {
      const state = await control.getPowerState();
      if (state === want || Date.now() >= deadline) return state;
      await new Promise((r) => setTimeout(r, this.#opts.settlePollMs));
    }
  }

  async setBootDevice(id: string, device: string, persistent: boolean, uefi: boolean): Promise<BootDeviceSetting> {
    if (!(DEVICES as readonly string[]).includes(device)) throw new ValidationError('device', `must be one of ${DEVICES.join(', ')}`);
    const node = await this.#node(id);
    return withNodeReservation(this.#store, node.uuid, this.#opts.controllerId, () =>
      this.#withControl(node, async (c) => {
        await c.setBootDevice(device as BootDevice, { persistent, uefi });
        this.#events.publish({ nodeUuid: node.uuid, type: 'boot-device.changed', details: { device, persistent: String(persistent), uefi: String(uefi) } });
        return c.getBootDevice();
      }),
    );
  }

  async bootDevice(id: string): Promise<BootDeviceSetting> {
    const node = await this.#node(id);
    return this.#withControl(node, (c) => c.getBootDevice());
  }

  async #transition(node: NodeRecord, event: ProvisionEvent, lastError: string | null): Promise<NodeRecord> {
    const to = nextState(node.uuid, node.provisionState, event);
    const updated = await this.#store.transition(node.uuid, node.provisionState, to, { lastError }, null);
    if (!updated) throw new BmError('conflict', `node ${node.uuid} changed state meanwhile; retry`, { node: node.uuid });
    this.#events.publish({ nodeUuid: node.uuid, type: 'provision.changed', provisionState: to, powerState: updated.powerState, ...(lastError ? { message: lastError } : {}), details: { event, from: node.provisionState } });
    return updated;
  }

  /** manage: enroll/manageable/... -> verifying, then (in the background) manageable or verify-failed. */
  async provision(id: string, verb: string): Promise<NodeRecord> {
    const node = await this.#node(id);
    if (verb !== 'manage') {
      if (verb === 'provide' || verb === 'inspect') throw new BmError('unsupported', `${verb} needs the deploy agent flow, which this controller does not run yet`, { node: node.uuid, verb });
      throw new ValidationError('verb', 'must be one of manage, provide, inspect');
    }
    const verifying = await this.#transition(node, 'manage', null);
    const task = this.#verify(verifying).catch((err: unknown) => this.#log.error({ err, node: node.uuid }, 'verification task failed'));
    this.#background.add(task);
    void task.finally(() => this.#background.delete(task));
    return verifying;
  }

  async #verify(node: NodeRecord): Promise<void> {
    await withNodeReservation(this.#store, node.uuid, this.#opts.controllerId, async () => {
      try {
        const state = await this.#withControl(node, (c) => c.getPowerState());
        await this.#observe(node, state);
        await this.#transition({ ...node, powerState: state }, 'done', null);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        await this.#transition(node, 'fail', `verification failed: ${reason}`);
      }
    }, { waitMs: 30_000 });
  }

  /** Lets background verifications finish (on stop). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#background]);
  }
}
