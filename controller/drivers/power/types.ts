/**
 * The power drivers' interfaces, owned here so the conductor and every driver
 * import them from below (after bmclib's per-capability interfaces and
 * Ironic's split of power from management). A driver instance speaks for one
 * BMC: it switches power and, through the management interface, chooses the
 * next boot device.
 */
export type PowerTarget = 'on' | 'off' | 'reboot' | 'soft-off';
export type PowerState = 'on' | 'off';
export type BootDevice = 'pxe' | 'disk';

export interface BootDeviceSetting {
  readonly device: BootDevice | string;
  readonly persistent: boolean;
  readonly uefi: boolean;
}

/** Power: read and change the chassis power. */
export interface PowerInterface {
  getPowerState(): Promise<PowerState>;
  setPowerState(target: PowerTarget): Promise<void>;
}

/** Management: the boot device of the next (or every) boot. */
export interface ManagementInterface {
  setBootDevice(device: BootDevice, options: { persistent: boolean; uefi: boolean }): Promise<void>;
  getBootDevice(): Promise<BootDeviceSetting>;
}

/** One BMC, as the conductor holds it for the length of a task. */
export interface PowerControl extends PowerInterface, ManagementInterface {
  close(): Promise<void>;
}

export interface BmcTarget {
  readonly nodeUuid: string;
  readonly driver: string;
  readonly address: string;
  readonly port: number;
  readonly username: string;
  readonly password: string;
}

export type PowerControlFactory = (target: BmcTarget) => PowerControl;
