/** Nodes and ports as the controller passes them around: never with the password. */
export const PROVISION_STATES = [
  'enroll',
  'verifying',
  'manageable',
  'verify-failed',
  'inspecting',
  'inspect-wait',
  'inspect-failed',
  'cleaning',
  'clean-failed',
  'available',
  'deploying',
  'wait-callback',
  'deploy-failed',
  'active',
  'deleting',
] as const;
export type ProvisionState = (typeof PROVISION_STATES)[number];

/** States in which a node holds (or is about to hold) a tenant's disk: it cannot be deleted. */
export const UNDELETABLE_STATES: readonly ProvisionState[] = ['deploying', 'wait-callback', 'active', 'deleting'];

/** What an operator says about a machine at enrollment: its hardware and how to reach its BMC. */
export interface NodeSpec {
  readonly name: string | null;
  readonly group: string;
  readonly cpus: number;
  readonly memoryMb: number;
  readonly localGb: number;
  readonly cpuArch: string;
  readonly pmAddress: string;
  readonly pmPort: number;
  readonly pmUser: string;
}

export interface NodeRecord extends NodeSpec {
  readonly uuid: string;
  readonly pmPasswordSet: boolean;
  readonly powerDriver: string;
  readonly provisionState: string;
  readonly powerState: string;
  readonly maintenance: boolean;
  readonly maintenanceReason: string | null;
  readonly instanceUuid: string | null;
  readonly lastError: string | null;
  readonly properties: Readonly<Record<string, string>>;
  readonly reservation: string | null;
  /** Bumped whenever the reservation is taken or broken (nodes/owner.ts). */
  readonly ownerEpoch: number;
  readonly agentAddress: string | null;
  readonly agentSeenAt: Date | null;
  readonly powerSyncFailures: number;
  readonly resourceClass: string;
  readonly version: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly macs: readonly string[];
}

export interface PortRecord {
  readonly uuid: string;
  readonly nodeUuid: string;
  readonly mac: string;
  readonly createdAt: Date;
}

export interface NodeFilter {
  readonly provisionState?: string;
  readonly group?: string;
  readonly maintenance?: boolean;
  /** true: nodes with an instance; false: without; a UUID: that instance's node. */
  readonly associated?: boolean | string;
}

export interface Page<T> {
  readonly items: readonly T[];
  readonly nextMarker: string | null;
}
