/**
 * Power and boot-device work on nodes, for the API (provision verbs are the
 * Provisioner's). Every change runs under the node's reservation; every observed change
 * is recorded and published. Passwords are decrypted here, handed to the
 * driver and never kept.
 */
import type { FenceView } from '../cluster/index.ts';
import type { Logger } from 'pino';
import { BmError, ValidationError } from '../errors.ts';
import type { EventBus } from '../events/index.ts';
import type { NodeStore, NodeRecord } from '../nodes/index.ts';
import type { SecretBox } from '../secrets/index.ts';
import type { BootDevice, BootDeviceSetting, PowerControl, PowerControlFactory, PowerState, PowerTarget } from '../drivers/power/index.ts';
import { BmcAccess } from './bmc-access.ts';
import { withNodeReservation } from './reservation.ts';
import type { UnreleasedReservations } from './unreleased.ts';

const TARGETS: readonly PowerTarget[] = ['on', 'off', 'reboot', 'soft-off'];
const DEVICES: readonly BootDevice[] = ['pxe', 'disk'];

export interface PowerConductorOptions {
  readonly controllerId: string;
  /** How long to wait for a node to reach the state asked for (soft-off takes an OS shutdown). */
  readonly settleTimeoutMs: number;
  readonly settlePollMs: number;
  /** A fenced controller answers power verbs with UNAVAILABLE instead of touching a BMC a peer may own now. */
  readonly fence?: FenceView;
  /** Shared with the task manager: a verb that ended while fenced lets go of its node once unfenced. */
  readonly unreleased?: UnreleasedReservations;
}

export class PowerConductor {
  readonly #store: NodeStore;
  readonly #bmc: BmcAccess;
  readonly #events: EventBus;
  readonly #opts: PowerConductorOptions;
  readonly #log: Logger;

  constructor(
    store: NodeStore,
    secrets: SecretBox,
    events: EventBus,
    factory: PowerControlFactory,
    opts: PowerConductorOptions,
    log: Logger,
  ) {
    this.#store = store;
    this.#bmc = new BmcAccess(store, secrets, factory);
    this.#events = events;
    this.#opts = opts;
    this.#log = log;
  }

  /** Runs `work` under the node's reservation (no wait: a verb on a busy node is refused at once). */
  #reserved<T>(nodeUuid: string, work: () => Promise<T>): Promise<T> {
    const unreleased = this.#opts.unreleased;
    return withNodeReservation(this.#store, nodeUuid, this.#opts.controllerId, work, unreleased ? { unreleased } : {});
  }

  async #node(id: string): Promise<NodeRecord> {
    this.#opts.fence?.check();
    if (id.length === 0 || id.length > 255) throw new ValidationError('id', 'must be a node uuid or name');
    const node = await this.#store.findNode(id);
    if (!node) throw new BmError('not-found', `node ${id} not found`, { id });
    return node;
  }

  async #withControl<T>(node: NodeRecord, work: (control: PowerControl) => Promise<T>): Promise<T> {
    return this.#bmc.with(node, work);
  }

  async #observe(node: NodeRecord, state: PowerState): Promise<void> {
    if (node.powerState === state) return;
    await this.#store.recordState(node.uuid, { powerState: state });
    this.#events.publish({
      nodeUuid: node.uuid,
      type: 'power.changed',
      powerState: state,
      provisionState: node.provisionState,
      details: { was: node.powerState },
    });
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
    return this.#reserved(node.uuid, async () => {
      const want: PowerState = target === 'on' || target === 'reboot' ? 'on' : 'off';
      await this.#store.recordState(node.uuid, { targetPowerState: want });
      const started = performance.now();
      try {
        const reached = await this.#withControl(node, async (c) => {
          await c.setPowerState(target as PowerTarget);
          return this.#settle(c, want);
        });
        await this.#store.recordState(node.uuid, {
          targetPowerState: null,
          powerState: reached,
          lastError: reached === want ? null : `asked for power ${target}, node is still ${reached}`,
        });
        this.#log.info(
          {
            audit: 'bmc',
            node: node.uuid,
            action: `power ${target}`,
            result: reached === want ? 'ok' : `still ${reached}`,
            ms: Math.round(performance.now() - started),
          },
          'power changed',
        );
        if (reached !== node.powerState || target === 'reboot') {
          this.#events.publish({
            nodeUuid: node.uuid,
            type: 'power.changed',
            powerState: reached,
            provisionState: node.provisionState,
            details: { target, was: node.powerState },
          });
        }
      } catch (err) {
        await this.#store.recordState(node.uuid, { targetPowerState: null, lastError: err instanceof Error ? err.message : String(err) });
        this.#log.info(
          {
            audit: 'bmc',
            node: node.uuid,
            action: `power ${target}`,
            result: err instanceof Error ? err.name : 'error',
            ms: Math.round(performance.now() - started),
          },
          'power change failed',
        );
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
    return this.#reserved(node.uuid, () =>
      this.#withControl(node, async (c) => {
        await c.setBootDevice(device as BootDevice, { persistent, uefi });
        this.#events.publish({
          nodeUuid: node.uuid,
          type: 'boot-device.changed',
          details: { device, persistent: String(persistent), uefi: String(uefi) },
        });
        return c.getBootDevice();
      }),
    );
  }

  async bootDevice(id: string): Promise<BootDeviceSetting> {
    const node = await this.#node(id);
    return this.#withControl(node, (c) => c.getBootDevice());
  }
}
