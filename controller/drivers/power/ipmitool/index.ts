/** The public face of controller/drivers/power/ipmitool/: what other folders import (scripts/check-imports.ts). */
export { IpmitoolDriver } from './driver.ts';
