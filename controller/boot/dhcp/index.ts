/** The public face of controller/boot/dhcp/: what other folders import (scripts/check-imports.ts). */
export { ipToInt, isIpv4 } from './options.ts';
