/** The public face of agent/configdrive/: what other folders import (scripts/check-imports.ts). */
export { buildConfigDrive } from './configdrive.ts';
export { writeConfigDrive } from './write.ts';
