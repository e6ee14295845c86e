/**
 * The native power driver: IPMI v2.0 over LAN (RMCP+) without a subprocess.
 * Sessions live in a SessionPool shared by every driver instance of the
 * process, so a power-state read is one signed round trip once a session to
 * the BMC is open. Fails with the same typed errors as the ipmitool driver.
 */
import type { BmcTarget, BootDevice, BootDeviceSetting, PowerControl, PowerState, PowerTarget } from '../types.ts';
import { BmcCommandError, type BmcContext } from '../errors.ts';
import {
  BOOT_PARAM_FLAGS,
  CHASSIS_CONTROL,
  CHASSIS_POWER_CYCLE,
  CHASSIS_POWER_DOWN,
  CHASSIS_POWER_UP,
  CHASSIS_SOFT_SHUTDOWN,
  GET_BOOT_OPTIONS,
  GET_CHASSIS_STATUS,
  GET_DEVICE_ID,
  PRIVILEGE_ADMINISTRATOR,
  PRIVILEGE_OPERATOR,
  SET_BOOT_OPTIONS,
  getBootOptionRequest,
  parseBootFlagsResponse,
  parseChassisStatus,
  parseDeviceId,
  setBootFlagsRequest,
  type DeviceId,
} from './commands.ts';
import { IpmiDecodeError } from './errors.ts';
import { SessionPool, type PoolTarget } from './pool.ts';
import type { IpmiSession } from './session.ts';

export interface IpmiDriverOptions {
  /** Defaults to one pool for the whole process. */
  readonly pool?: SessionPool;
  readonly privilege?: 'ADMINISTRATOR' | 'OPERATOR';
  /** Budget for one driver call, session set-up included. */
  readonly timeoutMs?: number;
}

let processPool: SessionPool | null = null;

/** The pool every driver shares unless given its own. */
export function defaultSessionPool(): SessionPool {
  processPool ??= new SessionPool();
  return processPool;
}

export class IpmiDriver implements PowerControl {
  readonly #pool: SessionPool;
  readonly #target: PoolTarget;
  readonly #timeoutMs: number;
  readonly #context: BmcContext;

  constructor(target: BmcTarget, options: IpmiDriverOptions = {}) {
    this.#pool = options.pool ?? defaultSessionPool();
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#context = { node: target.nodeUuid, bmc: `${target.address}:${target.port}` };
    this.#target = {
      address: target.address,
      port: target.port,
      username: target.username,
      password: target.password,
      privilege: options.privilege === 'OPERATOR' ? PRIVILEGE_OPERATOR : PRIVILEGE_ADMINISTRATOR,
      context: this.#context,
    };
  }

  #with<T>(work: (session: IpmiSession, deadline: number) => Promise<T>): Promise<T> {
    const deadline = performance.now() + this.#timeoutMs;
    return this.#pool.use(
      this.#target,
      async (session) => {
        try {
          return await work(session, deadline);
        } catch (err) {
          if (err instanceof IpmiDecodeError) throw new BmcCommandError(this.#context, `unusable answer: ${err.message}`);
          throw err;
        }
      },
      deadline,
    );
  }

  /** Checks address and credentials: opens a session and reads the device ID. */
  async validate(): Promise<DeviceId> {
    return this.getDeviceId();
  }

  getDeviceId(): Promise<DeviceId> {
    return this.#with(async (s, deadline) => parseDeviceId(await s.call(GET_DEVICE_ID, new Uint8Array(0), deadline, 'Get Device ID')));
  }

  getPowerState(): Promise<PowerState> {
    return this.#with(async (s, deadline) =>
      parseChassisStatus(await s.call(GET_CHASSIS_STATUS, new Uint8Array(0), deadline, 'Get Chassis Status')).powerOn ? 'on' : 'off',
    );
  }

  setPowerState(target: PowerTarget): Promise<void> {
    return this.#with(async (s, deadline) => {
      let action: number;
      if (target === 'on') action = CHASSIS_POWER_UP;
      else if (target === 'off') action = CHASSIS_POWER_DOWN;
      else if (target === 'soft-off') action = CHASSIS_SOFT_SHUTDOWN;
      else {
        // Power cycle is only defined for a machine that is on (section 28.3); a reboot of one that is off powers it up.
        const status = parseChassisStatus(await s.call(GET_CHASSIS_STATUS, new Uint8Array(0), deadline, 'Get Chassis Status'));
        action = status.powerOn ? CHASSIS_POWER_CYCLE : CHASSIS_POWER_UP;
      }
      await s.call(CHASSIS_CONTROL, new Uint8Array([action]), deadline, `Chassis Control ${target}`);
    });
  }

  setBootDevice(device: BootDevice, options: { persistent: boolean; uefi: boolean }): Promise<void> {
    return this.#with(async (s, deadline) => {
      await s.call(
        SET_BOOT_OPTIONS,
        setBootFlagsRequest({ device, valid: true, persistent: options.persistent, uefi: options.uefi }),
        deadline,
        `Set System Boot Options (boot device ${device})`,
      );
    });
  }

  getBootDevice(): Promise<BootDeviceSetting> {
    return this.#with(async (s, deadline) => {
      const flags = parseBootFlagsResponse(
        await s.call(GET_BOOT_OPTIONS, getBootOptionRequest(BOOT_PARAM_FLAGS), deadline, 'Get System Boot Options'),
      );
      // The selector is reported even without the valid bit: ipmi_sim never sets it, and a BMC clears it after the boot it applied to.
      return { device: flags.device, persistent: flags.persistent, uefi: flags.uefi };
    });
  }

  /** The session stays in the pool for the next call; the pool closes it when idle. */
  async close(): Promise<void> {}
}
