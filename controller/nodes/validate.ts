/**
 * Validation of what operators send to enroll and change nodes. Field names
 * in errors are the API's (proto) names, so `bmctl` and API users see the
 * field they typed. Limits follow what real hardware and IPMI allow.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { ValidationError } from '../errors.ts';
import { isUuid } from './uuid.ts';
import type { NodeSpec } from './types.ts';

export const CPU_ARCHES = ['x86_64', 'aarch64', 'ppc64le', 's390x', 'riscv64'] as const;
export const POWER_DRIVERS = ['ipmi', 'ipmitool', 'fake'] as const;
export type PowerDriverName = (typeof POWER_DRIVERS)[number];

/** More ports than any real machine has NICs; each one costs every node read a row. */
export const MAX_PORTS_PER_NODE = 64;

const hostname = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * A DNS name (RFC 1123) or an IPv4/IPv6 address as node:net parses it. A
 * dotted name whose last label is all digits is a mistyped IPv4 address
 * (`10.0.0.256`), not a name: no top-level domain is numeric.
 */
export function isHostOrAddress(value: string): boolean {
  if (isIP(value) !== 0) return true;
  return hostname.test(value) && !/^\d+$/.test(value.slice(value.lastIndexOf('.') + 1));
}

/** C0 controls (NUL included), DEL and C1 controls: nothing an operator types means them, and they corrupt logs and tables. */
const controlCharacter = /[\u0000-\u001f\u007f-\u009f]/;

export function hasControlCharacter(value: string): boolean {
  return controlCharacter.test(value);
}

const NO_CONTROL = 'must not contain NUL or other control characters';
/** Any free-form string an operator sends. */
const text = (): z.ZodString => z.string().regex(/^[^\u0000-\u001f\u007f-\u009f]*$/, NO_CONTROL);

const name = z
  .string()
  .max(255, 'at most 255 characters')
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" and "-" only, starting with a letter or digit')
  .refine((v) => !isUuid(v), 'must not look like a UUID (names and UUIDs share one namespace)');
/** A conductor group's name, wherever one is given (node, config). */
export const groupName = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, '1-64 letters, digits, ".", "_" or "-"');
const group = groupName;
const cpus = z.number().int().min(1, 'must be at least 1').max(4096, 'at most 4096');
const memoryMb = z
  .number()
  .int()
  .min(1, 'must be at least 1')
  .max(64 * 1024 * 1024, 'at most 67108864 (64 TiB)');
const localGb = z.number().int().min(1, 'must be at least 1').max(1_000_000, 'at most 1000000 (1 PB)');
const cpuArch = z.enum(CPU_ARCHES, { error: `must be one of ${CPU_ARCHES.join(', ')}` });
const pmAddress = z
  .string()
  .min(1, 'is required')
  .max(253, 'at most 253 characters')
  .refine(isHostOrAddress, 'must be a host name, an IPv4 address or an IPv6 address');
const pmPort = z.number().int().min(1).max(65535, 'must be 1-65535');
// IPMI 2.0 limits user names to 16 bytes and passwords to 20 (Set User Password, section 22.30).
const pmUser = text()
  .min(1, 'is required')
  .refine((v) => Buffer.byteLength(v) <= 16, 'at most 16 bytes (IPMI user name limit)');
const pmPassword = text()
  .min(1, 'is required')
  .refine((v) => Buffer.byteLength(v) <= 20, 'at most 20 bytes (IPMI 2.0 password limit)');
const powerDriver = z.enum(POWER_DRIVERS, { error: `must be one of ${POWER_DRIVERS.join(', ')}` });
const properties = z
  .record(text().max(64, 'property keys are at most 64 characters'), text().max(1024, 'property values are at most 1024 characters'))
  .refine((v) => Object.keys(v).length <= 64, 'at most 64 properties');
const reason = text().max(1024, 'at most 1024 characters');
const resourceClass = z.string().regex(/^[A-Za-z0-9_.-]{0,80}$/, 'at most 80 letters, digits, "_", "." or "-"');

export interface NodeCreateInput extends NodeSpec {
  readonly pmPassword: string;
  readonly mac: string;
  readonly powerDriver: PowerDriverName;
  readonly properties: Readonly<Record<string, string>>;
  readonly resourceClass?: string;
}

export interface NodePatch extends Partial<NodeSpec> {
  readonly pmPassword?: string;
  readonly maintenance?: boolean;
  readonly maintenanceReason?: string;
  readonly properties?: Readonly<Record<string, string>>;
  readonly powerDriver?: string;
  readonly resourceClass?: string;
}

const apiNames: Record<string, string> = {
  memoryMb: 'memory_mb',
  localGb: 'local_gb',
  cpuArch: 'cpu_arch',
  pmAddress: 'pm_address',
  pmPort: 'pm_port',
  pmUser: 'pm_user',
  pmPassword: 'pm_password',
  powerDriver: 'power_driver',
  maintenanceReason: 'maintenance_reason',
  resourceClass: 'resource_class',
};

function check<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const key = String(issue.path[0] ?? 'request');
  // Issues on password fields never echo the value; zod messages here never include it either.
  throw new ValidationError(apiNames[key] ?? key, issue.message);
}

const createSchema = z.object({
  name: name.nullable(),
  group,
  cpus,
  memoryMb,
  localGb,
  cpuArch,
  pmAddress,
  pmPort,
  pmUser,
  pmPassword,
  mac: z.string(),
  powerDriver,
  properties,
  resourceClass: resourceClass.optional(),
});

export function validateCreate(input: NodeCreateInput): NodeCreateInput {
  return check(createSchema, input);
}

const patchSchema = z.object({
  name: name.nullable().optional(),
  group: group.optional(),
  cpus: cpus.optional(),
  memoryMb: memoryMb.optional(),
  localGb: localGb.optional(),
  cpuArch: cpuArch.optional(),
  pmAddress: pmAddress.optional(),
  pmPort: pmPort.optional(),
  pmUser: pmUser.optional(),
  pmPassword: pmPassword.optional(),
  maintenance: z.boolean().optional(),
  maintenanceReason: reason.optional(),
  properties: properties.optional(),
  powerDriver: powerDriver.optional(),
  resourceClass: resourceClass.optional(),
});

export function validatePatch(patch: NodePatch): NodePatch {
  return check(patchSchema, patch);
}

/** An id a caller passes: a UUID, a name, or for ports also a MAC. Bounded before it reaches SQL. */
export function validateId(id: string, field = 'id'): string {
  if (id.length === 0) throw new ValidationError(field, 'is required');
  if (id.length > 255) throw new ValidationError(field, 'at most 255 characters');
  if (hasControlCharacter(id)) throw new ValidationError(field, NO_CONTROL);
  return id;
}
