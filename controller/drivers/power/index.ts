/** The public face of controller/drivers/power/: what other folders import (scripts/check-imports.ts). */
export { powerFactory } from './factory.ts';
export type { BmcTarget, BootDevice, BootDeviceSetting, PowerControl, PowerControlFactory, PowerState, PowerTarget } from './types.ts';
