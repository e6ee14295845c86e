/**
 * The flavor keys the controller reads (the seed's `nova flavor-key`
 * vocabulary), and the checks every key and value passes.
 */
import { ValidationError } from '../errors.ts';
import { CPU_ARCHES } from '../nodes/index.ts';

export const FLAVOR_KEYS = {
  cpuArch: 'cpu_arch',
  resourceClass: 'resource_class',
  deployKernel: 'baremetal:deploy_kernel_id',
  deployRamdisk: 'baremetal:deploy_ramdisk_id',
} as const;

/** `capabilities:boot_mode=uefi` asks for nodes whose capabilities say boot_mode:uefi. */
export const CAPABILITY_PREFIX = 'capabilities:';

const KEY = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$/;
const RESOURCE_CLASS = /^[A-Za-z0-9_.-]{1,80}$/;
// Printable, no control characters: values end up in logs, tables and SQL parameters.
const VALUE = /^[\x20-\x7e]{0,255}$/;
export const MAX_FLAVOR_KEYS = 64;

export function checkFlavorKey(key: string, value: string): void {
  if (!KEY.test(key)) throw new ValidationError('keys', `key "${key.slice(0, 64)}": 1-255 letters, digits, "_", ".", ":" or "-"`);
  if (!VALUE.test(value)) throw new ValidationError('keys', `value of ${key}: at most 255 printable ASCII characters`);
  if (key === FLAVOR_KEYS.cpuArch && !(CPU_ARCHES as readonly string[]).includes(value))
    throw new ValidationError('keys', `cpu_arch must be one of ${CPU_ARCHES.join(', ')}`);
  if (key === FLAVOR_KEYS.resourceClass && !RESOURCE_CLASS.test(value))
    throw new ValidationError('keys', 'resource_class: 1-80 letters, digits, "_", "." or "-"');
  if (key.startsWith(CAPABILITY_PREFIX) && key.length === CAPABILITY_PREFIX.length)
    throw new ValidationError('keys', 'capabilities: needs a name after "capabilities:"');
}

/** The capabilities a flavor asks for, name -> value. */
export function requiredCapabilities(extraSpecs: Readonly<Record<string, string>>): Map<string, string> {
  const wanted = new Map<string, string>();
  for (const [key, value] of Object.entries(extraSpecs))
    if (key.startsWith(CAPABILITY_PREFIX)) wanted.set(key.slice(CAPABILITY_PREFIX.length), value);
  return wanted;
}

/** A node's capabilities, from its `capabilities` property ("boot_mode:uefi,raid:1", Ironic's form). */
export function nodeCapabilities(properties: Readonly<Record<string, string>>): Map<string, string> {
  const have = new Map<string, string>();
  for (const pair of (properties.capabilities ?? '').split(',')) {
    const colon = pair.indexOf(':');
    if (colon > 0) have.set(pair.slice(0, colon).trim(), pair.slice(colon + 1).trim());
  }
  return have;
}

export function capabilitiesMatch(wanted: ReadonlyMap<string, string>, properties: Readonly<Record<string, string>>): boolean {
  if (wanted.size === 0) return true;
  const have = nodeCapabilities(properties);
  for (const [name, value] of wanted) if (have.get(name) !== value) return false;
  return true;
}
