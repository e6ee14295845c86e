/**
 * The controller's tables (MySQL dialect; MariaDB 10.11 and MySQL 8 both
 * accept what drizzle-kit generates from this). `db/` imports nothing of the
 * controller: it is the shared vocabulary of every controller process.
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  char,
  customType,
  datetime,
  index,
  int,
  json,
  mysqlTable,
  text,
  uniqueIndex,
  varchar,
} from 'drizzle-orm/mysql-core';

/** VARBINARY as a Buffer (drizzle's own varbinary is typed as a string). */
const varbinary = customType<{ data: Buffer; driverData: Buffer; config: { length: number } }>({
  dataType: (config) => `varbinary(${config?.length ?? 255})`,
});

const createdAt = () => datetime('created_at', { mode: 'date', fsp: 3 }).notNull().default(sql`CURRENT_TIMESTAMP(3)`);
const updatedAt = () => datetime('updated_at', { mode: 'date', fsp: 3 }).notNull().default(sql`CURRENT_TIMESTAMP(3)`);

export const nodes = mysqlTable(
  'nodes',
  {
    // UUIDv7: time-ordered, so paging by uuid lists nodes in enrollment order.
    uuid: char('uuid', { length: 36 }).primaryKey(),
    name: varchar('name', { length: 255 }),
    group: varchar('group_name', { length: 64 }).notNull().default('default'),
    cpus: int('cpus', { unsigned: true }).notNull(),
    memoryMb: int('memory_mb', { unsigned: true }).notNull(),
    localGb: int('local_gb', { unsigned: true }).notNull(),
    cpuArch: varchar('cpu_arch', { length: 16 }).notNull(),
    pmAddress: varchar('pm_address', { length: 255 }).notNull(),
    pmPort: int('pm_port', { unsigned: true }).notNull().default(623),
    pmUser: varchar('pm_user', { length: 64 }).notNull(),
    // AES-256-GCM: key id, nonce, tag and ciphertext; never decrypted outside the power drivers.
    pmPasswordEnc: varbinary('pm_password_enc', { length: 512 }),
    powerDriver: varchar('power_driver', { length: 32 }).notNull().default('ipmi'),
    provisionState: varchar('provision_state', { length: 32 }).notNull().default('enroll'),
    targetProvisionState: varchar('target_provision_state', { length: 32 }),
    powerState: varchar('power_state', { length: 16 }).notNull().default('unknown'),
    targetPowerState: varchar('target_power_state', { length: 16 }),
    maintenance: boolean('maintenance').notNull().default(false),
    maintenanceReason: text('maintenance_reason'),
    instanceUuid: char('instance_uuid', { length: 36 }),
    lastError: text('last_error'),
    properties: json('properties').$type<Record<string, string>>().notNull(),
    // The deploy agent: where it listens, when it last called in, and the hash
    // of the token of the operation it serves (issued per operation, expiring).
    agentAddress: varchar('agent_address', { length: 255 }),
    agentSeenAt: datetime('agent_seen_at', { mode: 'date', fsp: 3 }),
    agentTokenHash: char('agent_token_hash', { length: 64 }),
    agentTokenExpiresAt: datetime('agent_token_expires_at', { mode: 'date', fsp: 3 }),
    // The same token sealed with the cluster's secret key (bound to the node's uuid), so
    // whichever controller drives the node can talk to its agent; delivered flips once
    // when a boot script carries it: one token per boot, a second fetch gets none.
    agentTokenSealed: varbinary('agent_token_sealed', { length: 512 }),
    agentTokenDelivered: boolean('agent_token_delivered').notNull().default(false),
    // Consecutive failed power-state reads by the sync loop; past the configured
    // threshold the node is flagged "power sync failing" (and last_error says why).
    powerSyncFailures: int('power_sync_failures', { unsigned: true }).notNull().default(0),
    // A deploy's progress: the image being written and the offset the agent
    // last committed (fsynced), so a broken stream, or another controller
    // taking the node over, resumes there instead of starting again.
    deployImageSha256: char('deploy_image_sha256', { length: 64 }),
    deployCommittedOffset: bigint('deploy_committed_offset', { mode: 'number', unsigned: true }).notNull().default(0),
    // The scheduler matches it against a flavor's resource_class ('' matches a flavor without one).
    resourceClass: varchar('resource_class', { length: 80 }).notNull().default(''),
    // The controller holding the node's lock (see conductor reservations), or NULL.
    reservation: varchar('reservation', { length: 64 }),
    // Bumped each time the reservation is taken or broken: a task's writes require the epoch it reserved
    // at, so a late write from an owner that was fenced and taken over is refused (no split brain).
    ownerEpoch: bigint('owner_epoch', { mode: 'number', unsigned: true }).notNull().default(0),
    // Row version for optimistic concurrency: every write checks and bumps it.
    version: bigint('version', { mode: 'number', unsigned: true }).notNull().default(1),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('nodes_name_uq').on(t.name),
    index('nodes_state_idx').on(t.provisionState),
    index('nodes_group_idx').on(t.group),
    index('nodes_instance_idx').on(t.instanceUuid),
    index('nodes_reservation_idx').on(t.reservation),
    // The scheduler's candidate scan: free nodes of an arch, smallest first.
    index('nodes_sched_idx').on(t.provisionState, t.cpuArch, t.memoryMb, t.cpus, t.localGb),
  ],
);

export const ports = mysqlTable(
  'ports',
  {
    uuid: char('uuid', { length: 36 }).primaryKey(),
    nodeUuid: char('node_uuid', { length: 36 })
      .notNull()
      .references(() => nodes.uuid, { onDelete: 'cascade' }),
    // Normalised lower-case aa:bb:cc:dd:ee:ff; unique because PXE answers by MAC.
    address: char('address', { length: 17 }).notNull(),
    // A fixed IPv4 address DHCP hands this port (it need not lie in the dynamic range).
    fixedIp: varchar('fixed_ip', { length: 15 }),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('ports_address_uq').on(t.address), index('ports_node_idx').on(t.nodeUuid)],
);

export const controllers = mysqlTable('controllers', {
  id: varchar('id', { length: 64 }).primaryKey(),
  hostname: varchar('hostname', { length: 255 }).notNull(),
  apiAddress: varchar('api_address', { length: 255 }).notNull(),
  groups: json('group_names').$type<string[]>().notNull(),
  startedAt: datetime('started_at', { mode: 'date', fsp: 3 }).notNull(),
  heartbeatAt: datetime('heartbeat_at', { mode: 'date', fsp: 3 }).notNull(),
});

export const images = mysqlTable(
  'images',
  {
    uuid: char('uuid', { length: 36 }).primaryKey(),
    name: varchar('name', { length: 255 }).notNull(),
    diskFormat: varchar('disk_format', { length: 8 }).notNull(),
    // saving while the upload runs; active once stored and checked.
    status: varchar('status', { length: 16 }).notNull(),
    // Digest of the uploaded file: also the blob's name in the store.
    sha256: char('sha256', { length: 64 }),
    size: bigint('size', { mode: 'number', unsigned: true }).notNull().default(0),
    virtualSize: bigint('virtual_size', { mode: 'number', unsigned: true }).notNull().default(0),
    // Digest of the raw content a deploy writes (equals sha256 for raw images).
    rawSha256: char('raw_sha256', { length: 64 }),
    // The 4 MiB block digest of the raw content (proto/digest/block-sha256.ts), which deploys check;
    // null for images stored before it existed (their deploys check raw_sha256).
    rawBlockSha256: char('raw_block_sha256', { length: 64 }),
    properties: json('properties').$type<Record<string, string>>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('images_name_uq').on(t.name), index('images_sha_idx').on(t.sha256)],
);

/**
 * DHCP leases of every controller of a group. The address is the primary key:
 * the database, not a controller's memory, decides who holds an address, so
 * two controllers can never ACK one address to two MACs.
 */
export const dhcpLeases = mysqlTable(
  'dhcp_leases',
  {
    ip: int('ip', { unsigned: true }).primaryKey(),
    mac: char('mac', { length: 17 }).notNull(),
    // offered (held for an OFFER), bound (ACKed), declined (in use on the wire by someone else).
    state: varchar('state', { length: 10 }).notNull(),
    expiresAt: datetime('expires_at', { mode: 'date', fsp: 3 }).notNull(),
  },
  (t) => [index('dhcp_leases_mac_idx').on(t.mac), index('dhcp_leases_expiry_idx').on(t.expiresAt)],
);

/** What tenants ask for (nova's flavor): minimum hardware plus keys the scheduler and deploy read. */
export const flavors = mysqlTable(
  'flavors',
  {
    uuid: char('uuid', { length: 36 }).primaryKey(),
    name: varchar('name', { length: 255 }).notNull(),
    ramMb: int('ram_mb', { unsigned: true }).notNull(),
    diskGb: int('disk_gb', { unsigned: true }).notNull(),
    cpus: int('cpus', { unsigned: true }).notNull(),
    // cpu_arch, resource_class, capabilities:NAME, baremetal:deploy_kernel_id / _ramdisk_id.
    extraSpecs: json('extra_specs').$type<Record<string, string>>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('flavors_name_uq').on(t.name)],
);

/** MEDIUMBLOB: user data is up to 64 KiB, one byte more than BLOB holds. */
const mediumblob = customType<{ data: Buffer; driverData: Buffer }>({ dataType: () => 'mediumblob' });

/** A tenant's machine: a flavor and an image on one node, in one project. */
export const instances = mysqlTable(
  'instances',
  {
    uuid: char('uuid', { length: 36 }).primaryKey(),
    name: varchar('name', { length: 255 }).notNull(),
    project: varchar('project', { length: 64 }).notNull(),
    flavorUuid: char('flavor_uuid', { length: 36 }).notNull(),
    imageUuid: char('image_uuid', { length: 36 }).notNull(),
    nodeUuid: char('node_uuid', { length: 36 }),
    // BUILD, ACTIVE, ERROR, DELETING (the node's provision state has the detail).
    state: varchar('state', { length: 16 }).notNull(),
    progress: int('progress', { unsigned: true }).notNull().default(0),
    lastError: text('last_error'),
    userData: mediumblob('user_data'),
    sshKeys: json('ssh_keys').$type<string[]>().notNull(),
    // {"mode":"dhcp"} or {"mode":"static","address":..,"netmask":..,"gateway":..,"dns":[..]}
    network: json('network').$type<Record<string, unknown>>().notNull(),
    address: varchar('address', { length: 45 }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('instances_project_idx').on(t.project),
    index('instances_node_idx').on(t.nodeUuid),
    index('instances_flavor_idx').on(t.flavorUuid),
  ],
);

/** Project tokens made through the API (bm.toml's own tokens are the fleet's admins). Only digests are kept. */
export const apiTokens = mysqlTable(
  'api_tokens',
  {
    // sha256 of the token, hex; the first 12 digits are the id operators see.
    hash: char('hash', { length: 64 }).primaryKey(),
    project: varchar('project', { length: 64 }).notNull(),
    // admin (the fleet) or member (its project's instances).
    role: varchar('role', { length: 8 }).notNull(),
    description: varchar('description', { length: 255 }).notNull().default(''),
    createdAt: createdAt(),
  },
  (t) => [index('api_tokens_project_idx').on(t.project)],
);

export type ApiTokenRow = typeof apiTokens.$inferSelect;
export type FlavorRow = typeof flavors.$inferSelect;
export type InstanceRow = typeof instances.$inferSelect;
export type NodeRow = typeof nodes.$inferSelect;
export type ImageRow = typeof images.$inferSelect;
export type NewNodeRow = typeof nodes.$inferInsert;
export type PortRow = typeof ports.$inferSelect;
export type ControllerRow = typeof controllers.$inferSelect;
