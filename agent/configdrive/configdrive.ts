/**
 * A config-2 config drive: the files cloud-init's ConfigDrive datasource
 * reads, in an ISO 9660 image labelled `config-2` (the label is how it finds
 * the drive). Layout as Nova and Ironic write it:
 *   openstack/latest/meta_data.json     instance identity and SSH keys
 *   openstack/latest/user_data          optional, opaque bytes
 *   openstack/latest/network_data.json  links, networks, services
 * Nova also writes dated copies (openstack/2012-08-10/ ...) and an ec2/
 * tree for old guests; cloud-init reads `latest`, so we write only that.
 */
import { ConfigDriveError } from '../errors.ts';
import { buildIso9660 } from './iso9660.ts';

export const CONFIG_DRIVE_LABEL = 'config-2';

export interface InstanceMetadata {
  readonly uuid: string;
  readonly name: string;
  readonly hostname: string;
  /** Key name → OpenSSH public key line. */
  readonly publicKeys?: Readonly<Record<string, string>>;
  readonly launchIndex?: number;
  readonly availabilityZone?: string;
  /** Free-form instance metadata (`nova boot --meta`). */
  readonly meta?: Readonly<Record<string, string>>;
}

/** network_data.json as Nova's schema has it (snake_case: it is the file's own format). */
export interface NetworkLink {
  readonly id: string;
  readonly type: string;
  readonly ethernet_mac_address?: string;
  readonly mtu?: number | null;
  readonly vif_id?: string;
  readonly [extra: string]: unknown;
}

export interface NetworkRoute {
  readonly network: string;
  readonly netmask: string;
  readonly gateway: string;
}

export interface Network {
  readonly id: string;
  readonly link: string;
  /** ipv4, ipv6, ipv4_dhcp, ipv6_dhcp, ipv6_slaac ... */
  readonly type: string;
  readonly network_id?: string;
  readonly ip_address?: string;
  readonly netmask?: string;
  readonly routes?: readonly NetworkRoute[];
  readonly [extra: string]: unknown;
}

export interface NetworkService {
  readonly type: string;
  readonly address: string;
}

export interface NetworkData {
  readonly links: readonly NetworkLink[];
  readonly networks: readonly Network[];
  readonly services: readonly NetworkService[];
}

export interface ConfigDriveContent {
  /** The metadata, or meta_data.json as received (WriteConfigDrive carries JSON text). */
  readonly metaData: InstanceMetadata | string;
  readonly networkData: NetworkData | string;
  readonly userData?: Uint8Array;
  /** Timestamps in the image; default the Unix epoch, for reproducible bytes. */
  readonly recordedAt?: Date;
}

/** meta_data.json as Nova writes it: `public_keys` by name, and the same keys as `keys`. */
export function renderMetaData(metadata: InstanceMetadata): string {
  const publicKeys = metadata.publicKeys ?? {};
  return JSON.stringify({
    uuid: metadata.uuid,
    name: metadata.name,
    hostname: metadata.hostname,
    launch_index: metadata.launchIndex ?? 0,
    ...(metadata.availabilityZone !== undefined ? { availability_zone: metadata.availabilityZone } : {}),
    public_keys: publicKeys,
    keys: Object.entries(publicKeys).map(([name, data]) => ({ name, type: 'ssh', data })),
    meta: metadata.meta ?? {},
  });
}

function parseObject(file: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigDriveError('invalid-argument', `${file} is not JSON: ${(error as Error).message}`, { file });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ConfigDriveError('invalid-argument', `${file} must be a JSON object`, { file });
  return value as Record<string, unknown>;
}

/** Checks JSON text received over the wire just enough that cloud-init will accept it. */
function checkedMetaData(text: string): string {
  const value = parseObject('meta_data.json', text);
  if (typeof value.uuid !== 'string' || value.uuid === '')
    throw new ConfigDriveError('invalid-argument', 'meta_data.json needs a "uuid" string', { file: 'meta_data.json' });
  return text;
}

function checkedNetworkData(text: string): string {
  const value = parseObject('network_data.json', text);
  for (const key of ['links', 'networks', 'services']) {
    if (value[key] !== undefined && !Array.isArray(value[key]))
      throw new ConfigDriveError('invalid-argument', `network_data.json: "${key}" must be a list`, { file: 'network_data.json', key });
  }
  return text;
}

export function configDriveFiles(content: ConfigDriveContent): { path: string; data: Uint8Array }[] {
  const encoder = new TextEncoder();
  const metaData = typeof content.metaData === 'string' ? checkedMetaData(content.metaData) : renderMetaData(content.metaData);
  const networkData =
    typeof content.networkData === 'string' ? checkedNetworkData(content.networkData) : JSON.stringify(content.networkData);
  const files: { path: string; data: Uint8Array }[] = [
    { path: 'openstack/latest/meta_data.json', data: encoder.encode(metaData) },
    { path: 'openstack/latest/network_data.json', data: encoder.encode(networkData) },
  ];
  if (content.userData !== undefined && content.userData.length > 0)
    files.push({ path: 'openstack/latest/user_data', data: content.userData });
  return files;
}

/** The config drive as an ISO 9660 image (Rock Ridge and Joliet, label config-2). */
export function buildConfigDrive(content: ConfigDriveContent): Uint8Array {
  return buildIso9660({
    volumeId: CONFIG_DRIVE_LABEL,
    files: configDriveFiles(content),
    ...(content.recordedAt ? { recordedAt: content.recordedAt } : {}),
    applicationId: 'BM AGENT CONFIG DRIVE',
  });
}
