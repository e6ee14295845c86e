/** The public face of controller/flavors/: what other folders import (scripts/check-imports.ts). */
export { FlavorCatalog, type FlavorRecord } from './catalog.ts';
export { capabilitiesMatch, FLAVOR_KEYS, requiredCapabilities } from './keys.ts';
