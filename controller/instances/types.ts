/** Instances as the controller passes them around. */
export const INSTANCE_STATES = ['BUILD', 'ACTIVE', 'ERROR', 'DELETING'] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];

export interface InstanceNetwork {
  readonly mode: 'dhcp' | 'static';
  readonly address?: string;
  readonly netmask?: string;
  readonly gateway?: string;
  readonly dns?: readonly string[];
}

export interface InstanceRecord {
  readonly uuid: string;
  readonly name: string;
  readonly project: string;
  readonly flavorUuid: string;
  readonly imageUuid: string;
  readonly nodeUuid: string | null;
  readonly state: InstanceState;
  readonly progress: number;
  readonly lastError: string | null;
  readonly userData: Buffer | null;
  readonly sshKeys: readonly string[];
  readonly network: InstanceNetwork;
  readonly address: string | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}
