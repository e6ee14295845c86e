/** The public face of controller/drivers/power/fake/: what other folders import (scripts/check-imports.ts). */
export { FakeBmcWorld, FakePowerDriver } from './driver.ts';
