/**
 * What the agent reports about the machine it runs on. Plain data, shaped
 * like `bm.agent.v1.Inventory` so the gRPC layer only copies fields. Sizes are
 * numbers of bytes: 2^53 bytes is 8 PiB, far beyond any one disk.
 */
export interface CpuInventory {
  /** Logical processors the kernel sees (threads, not sockets or cores). */
  readonly count: number;
  readonly model: string;
  /** Kernel architecture name: x86_64, aarch64, ppc64le ... */
  readonly arch: string;
  readonly flags: readonly string[];
}

export interface DiskInventory {
  /** Kernel name: sda, nvme0n1, vda. */
  readonly name: string;
  /** Device node the agent would write to: /dev/<name>. */
  readonly path: string;
  readonly sizeBytes: number;
  readonly model: string;
  readonly serial: string;
  /** `0x`-prefixed NAA identifier as udev's ID_WWN shows it, or the raw wwid (eui., t10.) otherwise; '' when none. */
  readonly wwn: string;
  readonly rotational: boolean;
}

export interface NicInventory {
  readonly name: string;
  /** Lower-case colon-separated MAC. */
  readonly mac: string;
  /** Negotiated speed; 0 when the kernel does not know (link down, virtio). */
  readonly speedMbps: number;
  readonly link: boolean;
}

export interface DmiInventory {
  readonly vendor: string;
  readonly product: string;
  readonly serial: string;
}

export type BootMode = 'bios' | 'uefi';

export interface Inventory {
  readonly cpu: CpuInventory;
  /** MemTotal: what the kernel manages, a little less than what is installed. */
  readonly memoryBytes: number;
  readonly disks: readonly DiskInventory[];
  readonly nics: readonly NicInventory[];
  readonly dmi: DmiInventory;
  readonly bootMode: BootMode;
}

export interface InventoryOptions {
  /** Where /proc and /sys are found; '/' on a machine, a fixture tree in tests. */
  readonly root?: string;
}
