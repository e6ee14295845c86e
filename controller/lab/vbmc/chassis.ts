/**
 * The machine behind a virtual BMC: power, the system boot options and the
 * device identity, and the IPMI commands that read and change them. The
 * session layer (virtual-bmc.ts) has checked privilege before calling in.
 */
import {
  CC_INVALID_COMMAND,
  CC_INVALID_DATA,
  CC_OK,
  CC_PARAMETER_NOT_SUPPORTED,
  CC_REQUEST_LENGTH,
  CHASSIS_CONTROL,
  GET_BOOT_OPTIONS,
  GET_CHASSIS_STATUS,
  GET_DEVICE_ID,
  SET_BOOT_OPTIONS,
  decodeBootFlags,
  type BootFlags,
  type CommandId,
  type IpmiRequest,
} from '../../drivers/power/ipmi/index.ts';

export type PowerCause = 'on' | 'off' | 'cycle' | 'reset' | 'soft-off' | 'external';

export interface PowerChange {
  readonly bmc: string;
  readonly power: 'on' | 'off';
  /** The boot device in effect when the machine powered on ("default" without an override). */
  readonly bootDevice: string;
  readonly cause: PowerCause;
}

export interface Reply {
  readonly cc: number;
  readonly data?: Uint8Array;
}

/** Boot option parameters kept, with their data lengths (section 28.13). */
const BOOT_PARAM_LENGTHS: ReadonlyMap<number, number> = new Map([
  [0, 1],
  [1, 1],
  [2, 1],
  [3, 1],
  [4, 2],
  [5, 5],
]);

export function is(req: IpmiRequest, cmd: CommandId): boolean {
  return req.netFn === cmd.netFn && req.command === cmd.command;
}

export class Chassis {
  readonly #name: string;
  readonly #bootParams = new Map<number, Uint8Array>([[5, new Uint8Array(5)]]);
  power: 'on' | 'off';
  onPowerChange: ((change: PowerChange) => void) | undefined;

  constructor(name: string, power: 'on' | 'off', onPowerChange?: (change: PowerChange) => void) {
    this.#name = name;
    this.power = power;
    this.onPowerChange = onPowerChange;
  }

  get bootFlags(): BootFlags {
    return decodeBootFlags(this.#bootParams.get(5)!);
  }

  command(req: IpmiRequest): Reply {
    const d = req.data;
    if (is(req, GET_DEVICE_ID)) {
      // Device 0x20 rev 1, firmware 1.02, IPMI 2.0, chassis + bridge + IPMB + SDR support, IANA 2 (placeholder), product 0x0bad.
      return { cc: CC_OK, data: new Uint8Array([0x20, 0x01, 0x01, 0x02, 0x02, 0x8f, 0x02, 0x00, 0x00, 0xad, 0x0b, 0, 0, 0, 0]) };
    }
    if (is(req, GET_CHASSIS_STATUS)) return { cc: CC_OK, data: new Uint8Array([this.power === 'on' ? 0x01 : 0x00, 0x00, 0x00, 0x00]) };
    if (is(req, CHASSIS_CONTROL)) return this.#control(d);
    if (is(req, SET_BOOT_OPTIONS)) {
      if (d.length < 1) return { cc: CC_REQUEST_LENGTH };
      const param = d[0]! & 0x7f;
      const length = BOOT_PARAM_LENGTHS.get(param);
      if (length === undefined) return { cc: CC_PARAMETER_NOT_SUPPORTED };
      if (d.length !== 1 + length) return { cc: CC_REQUEST_LENGTH };
      this.#bootParams.set(param, d.slice(1));
      return { cc: CC_OK };
    }
    if (is(req, GET_BOOT_OPTIONS)) {
      if (d.length < 3) return { cc: CC_REQUEST_LENGTH };
      const param = d[0]! & 0x7f;
      const length = BOOT_PARAM_LENGTHS.get(param);
      if (length === undefined) return { cc: CC_PARAMETER_NOT_SUPPORTED };
      return { cc: CC_OK, data: new Uint8Array([0x01, param, ...(this.#bootParams.get(param) ?? new Uint8Array(length))]) };
    }
    return { cc: CC_INVALID_COMMAND };
  }

  #control(d: Uint8Array): Reply {
    if (d.length < 1) return { cc: CC_REQUEST_LENGTH };
    switch (d[0]! & 0x0f) {
      case 0x00:
        this.#set('off', 'off');
        return { cc: CC_OK };
      case 0x01:
        this.#set('on', 'on');
        return { cc: CC_OK };
      case 0x02:
      case 0x03: {
        // A cycle or reset of a machine that is off powers it up, as most BMCs do.
        const cause = d[0] === 0x02 ? 'cycle' : 'reset';
        if (this.power === 'on') this.#set('off', cause);
        this.#set('on', cause);
        return { cc: CC_OK };
      }
      case 0x04:
        return { cc: CC_OK };
      case 0x05:
        this.#set('off', 'soft-off');
        return { cc: CC_OK };
      default:
        return { cc: CC_INVALID_DATA };
    }
  }

  #set(power: 'on' | 'off', cause: PowerCause): void {
    this.power = power;
    const flags = this.bootFlags;
    const bootDevice = flags.valid ? flags.device : 'default';
    if (power === 'on' && flags.valid && !flags.persistent) {
      // A next-boot-only override is used up by the boot it applied to (section 28.13, parameter 5).
      const raw = this.#bootParams.get(5)!;
      raw[0] = raw[0]! & 0x7f;
    }
    this.onPowerChange?.({ bmc: this.#name, power, bootDevice, cause });
  }

  /** Power changed at the machine, not through IPMI (someone pressed the button). */
  setPower(power: 'on' | 'off'): void {
    if (power !== this.power) this.#set(power, 'external');
  }
}
