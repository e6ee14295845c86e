/**
 * The fake power and management driver, registered like the real ones (after
 * Ironic's fake hardware): a node naming `fake` runs every conductor flow
 * without a BMC. Machines live in a FakeBmcWorld keyed by BMC address:port,
 * which tests use to inject delays and failures and to watch power changes.
 */
import { BmcAuthError, BmcCommandError, BmcTimeoutError } from '../errors.ts';
import type { BmcTarget, BootDevice, BootDeviceSetting, PowerControl, PowerState, PowerTarget } from '../types.ts';

export type FakeFailure = 'auth' | 'timeout' | 'command';

export interface FakeMachine {
  power: PowerState;
  bootDevice: BootDeviceSetting;
  /** Every call waits this long first. */
  delayMs: number;
  /** Every call fails this way, until cleared. */
  failure: FakeFailure | null;
  /** Calls made, newest last, e.g. "power on", "bootdev pxe". */
  readonly calls: string[];
}

export interface FakePowerChange {
  readonly bmc: string;
  readonly power: PowerState;
  readonly bootDevice: BootDeviceSetting;
  readonly cause: PowerTarget;
}

export class FakeBmcWorld {
  readonly #machines = new Map<string, FakeMachine>();
  readonly #listeners = new Set<(change: FakePowerChange) => void>();

  machine(address: string, port = 623): FakeMachine {
    const key = `${address}:${port}`;
    let m = this.#machines.get(key);
    if (!m) {
      m = { power: 'off', bootDevice: { device: 'disk', persistent: true, uefi: false }, delayMs: 0, failure: null, calls: [] };
      this.#machines.set(key, m);
    }
    return m;
  }

  /** Told after every power change (a test's stand-in for the machine booting). */
  onPowerChange(listener: (change: FakePowerChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  notify(change: FakePowerChange): void {
    for (const l of this.#listeners) l(change);
  }
}

export class FakePowerDriver implements PowerControl {
  readonly #target: BmcTarget;
  readonly #world: FakeBmcWorld;
  readonly #bmc: string;

  constructor(target: BmcTarget, world: FakeBmcWorld) {
    this.#target = target;
    this.#world = world;
    this.#bmc = `${target.address}:${target.port}`;
  }

  async #call(what: string): Promise<FakeMachine> {
    const m = this.#world.machine(this.#target.address, this.#target.port);
    m.calls.push(what);
    if (m.delayMs > 0) await new Promise((r) => setTimeout(r, m.delayMs));
    const context = { bmc: this.#bmc, node: this.#target.nodeUuid };
    if (m.failure === 'auth') throw new BmcAuthError(context, 'fake: credentials refused');
    if (m.failure === 'timeout') throw new BmcTimeoutError(context, 'fake: no answer');
    if (m.failure === 'command') throw new BmcCommandError(context, 'fake: command failed');
    return m;
  }

  async getPowerState(): Promise<PowerState> {
    return (await this.#call('power status')).power;
  }

  async setPowerState(target: PowerTarget): Promise<void> {
    const m = await this.#call(`power ${target}`);
    m.power = target === 'on' || target === 'reboot' ? 'on' : 'off';
    const bootDevice = m.bootDevice;
    // A one-time boot device is used by this boot, then forgotten (as IPMI's boot flags are).
    if (m.power === 'on' && !m.bootDevice.persistent) m.bootDevice = { device: 'disk', persistent: true, uefi: m.bootDevice.uefi };
    this.#world.notify({ bmc: this.#bmc, power: m.power, bootDevice, cause: target });
  }

  async setBootDevice(device: BootDevice, options: { persistent: boolean; uefi: boolean }): Promise<void> {
    const m = await this.#call(`bootdev ${device}`);
    m.bootDevice = { device, persistent: options.persistent, uefi: options.uefi };
  }

  async getBootDevice(): Promise<BootDeviceSetting> {
    return (await this.#call('bootdev status')).bootDevice;
  }

  async close(): Promise<void> {}
}
