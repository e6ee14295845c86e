/**
 * What the conductor needs of a power driver, and how it gets one for a node.
 * Structural on purpose: every driver in drivers/power satisfies it, and a
 * unit test can hand in a fake.
 */
export type PowerTarget = 'on' | 'off' | 'reboot' | 'soft-off';
export type PowerState = 'on' | 'off';
export type BootDevice = 'pxe' | 'disk';

export interface BootDeviceSetting {
  readonly device: BootDevice | string;
  readonly persistent: boolean;
  readonly uefi: boolean;
}

export interface PowerControl {
  getPowerState(): Promise<PowerState>;
  setPowerState(target: PowerTarget): Promise<void>;
  setBootDevice(device: BootDevice, options: { persistent: boolean; uefi: boolean }): Promise<void>;
  getBootDevice(): Promise<BootDeviceSetting>;
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
