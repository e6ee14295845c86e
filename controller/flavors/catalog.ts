/**
 * Flavors in MySQL: created, read, keyed and deleted. A flavor in use by an
 * instance cannot be deleted (its deploys still read its keys).
 */
import { asc, count, eq } from 'drizzle-orm';
import { type Database, flavors, instances, type FlavorRow } from '../../db/index.ts';
import { AlreadyExistsError, BmError, NotFoundError, ValidationError } from '../errors.ts';
import type { ImageCatalog } from '../images/index.ts';
import { isUuid, uuidv7 } from '../nodes/index.ts';
import { checkFlavorKey, FLAVOR_KEYS, MAX_FLAVOR_KEYS } from './keys.ts';

export interface FlavorRecord {
  readonly uuid: string;
  readonly name: string;
  readonly ramMb: number;
  readonly diskGb: number;
  readonly cpus: number;
  readonly extraSpecs: Readonly<Record<string, string>>;
  readonly createdAt: Date;
}

export interface FlavorInput {
  readonly name: string;
  readonly ramMb: number;
  readonly diskGb: number;
  readonly cpus: number;
  readonly cpuArch: string;
  readonly resourceClass: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
/** Image keys a flavor may carry, and the format the named image must have. */
const IMAGE_KEYS: Readonly<Record<string, string>> = { [FLAVOR_KEYS.deployKernel]: 'aki', [FLAVOR_KEYS.deployRamdisk]: 'ari' };

function toRecord(row: FlavorRow): FlavorRecord {
  return {
    uuid: row.uuid,
    name: row.name,
    ramMb: row.ramMb,
    diskGb: row.diskGb,
    cpus: row.cpus,
    extraSpecs: row.extraSpecs ?? {},
    createdAt: row.createdAt,
  };
}

function isDuplicate(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) if ((e as { code?: string }).code === 'ER_DUP_ENTRY') return true;
  return false;
}

function checkSize(field: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 1 || value > max) throw new ValidationError(field, `must be a whole number from 1 to ${max}`);
}

export class FlavorCatalog {
  readonly #db: Database;
  readonly #images: ImageCatalog;

  constructor(db: Database, images: ImageCatalog) {
    this.#db = db;
    this.#images = images;
  }

  async create(input: FlavorInput): Promise<FlavorRecord> {
    if (!NAME.test(input.name) || isUuid(input.name))
      throw new ValidationError('name', 'must be 1-255 letters, digits, ".", "_" or "-", not UUID-shaped');
    // The same limits as a node's, so a flavor no node could ever satisfy is refused early.
    checkSize('ram_mb', input.ramMb, 64 * 1024 * 1024);
    checkSize('disk_gb', input.diskGb, 1_000_000);
    checkSize('cpus', input.cpus, 4096);
    const extraSpecs: Record<string, string> = { [FLAVOR_KEYS.cpuArch]: input.cpuArch === '' ? 'x86_64' : input.cpuArch };
    if (input.resourceClass !== '') extraSpecs[FLAVOR_KEYS.resourceClass] = input.resourceClass;
    for (const [k, v] of Object.entries(extraSpecs)) checkFlavorKey(k, v);
    const row = {
      uuid: uuidv7(),
      name: input.name,
      ramMb: input.ramMb,
      diskGb: input.diskGb,
      cpus: input.cpus,
      extraSpecs,
      createdAt: new Date(),
    };
    try {
      await this.#db.insert(flavors).values(row);
    } catch (err) {
      if (isDuplicate(err)) throw new AlreadyExistsError(`a flavor named ${input.name} already exists`, { name: input.name });
      throw err;
    }
    return toRecord(row);
  }

  async find(id: string): Promise<FlavorRecord | null> {
    if (id.length === 0 || id.length > 255) return null;
    const rows = await this.#db
      .select()
      .from(flavors)
      .where(isUuid(id) ? eq(flavors.uuid, id) : eq(flavors.name, id))
      .limit(1);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  async get(id: string): Promise<FlavorRecord> {
    const flavor = await this.find(id);
    if (!flavor) throw new NotFoundError('flavor', id.slice(0, 255));
    return flavor;
  }

  async list(): Promise<FlavorRecord[]> {
    return (await this.#db.select().from(flavors).orderBy(asc(flavors.name))).map(toRecord);
  }

  async setKeys(id: string, keys: Readonly<Record<string, string>>): Promise<FlavorRecord> {
    const flavor = await this.get(id);
    for (const [key, value] of Object.entries(keys)) {
      checkFlavorKey(key, value);
      const format = IMAGE_KEYS[key];
      if (format) {
        const image = await this.#images.find(value);
        if (!image) throw new ValidationError('keys', `${key}: no image ${value}`);
        if (image.diskFormat !== format)
          throw new ValidationError('keys', `${key}: image ${value} is ${image.diskFormat}, expected ${format}`);
      }
    }
    const extraSpecs = { ...flavor.extraSpecs, ...keys };
    if (Object.keys(extraSpecs).length > MAX_FLAVOR_KEYS) throw new ValidationError('keys', `at most ${MAX_FLAVOR_KEYS} keys per flavor`);
    await this.#db.update(flavors).set({ extraSpecs }).where(eq(flavors.uuid, flavor.uuid));
    return { ...flavor, extraSpecs };
  }

  async unsetKeys(id: string, keys: readonly string[]): Promise<FlavorRecord> {
    const flavor = await this.get(id);
    const extraSpecs = { ...flavor.extraSpecs };
    for (const key of keys) {
      if (!(key in extraSpecs)) throw new ValidationError('keys', `flavor ${flavor.name} has no key ${key.slice(0, 255)}`);
      if (key === FLAVOR_KEYS.cpuArch) throw new ValidationError('keys', 'cpu_arch cannot be unset (set another arch instead)');
      delete extraSpecs[key];
    }
    await this.#db.update(flavors).set({ extraSpecs }).where(eq(flavors.uuid, flavor.uuid));
    return { ...flavor, extraSpecs };
  }

  async delete(id: string): Promise<void> {
    const flavor = await this.get(id);
    const [used] = await this.#db.select({ n: count() }).from(instances).where(eq(instances.flavorUuid, flavor.uuid));
    if ((used?.n ?? 0) > 0)
      throw new BmError('failed-precondition', `flavor ${flavor.name} is used by ${used!.n} instance(s); delete them first`, {
        flavor: flavor.uuid,
      });
    await this.#db.delete(flavors).where(eq(flavors.uuid, flavor.uuid));
  }
}
