/** Where the lab finds the repository's entry points and its machines' ramdisk view, wherever it is started from. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const bmctlPath = path.join(repoRoot, 'controller/cli/main.ts');
export const agentMainPath = path.join(repoRoot, 'agent/main.ts');
/**
 * The /proc and /sys a virtual machine's agent reads its inventory from: a
 * q35 VM with OVMF, one virtio disk and one virtio NIC (copied from the
 * agent's inventory fixture of that machine); the lab writes each machine's
 * MAC and kernel command line into its own copy.
 */
export const machineRoot = path.join(repoRoot, 'controller/lab/machine-root');
