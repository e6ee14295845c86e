/** The public face of controller/server/: what other folders import (scripts/check-imports.ts). */
export { startController } from './controller.ts';
