/**
 * Renders the iPXE script a node gets from /boot/<mac>.ipxe. Pure: a plan in,
 * script text out. Every value that lands in the script is checked against a
 * conservative character set, so nothing can inject iPXE commands, `${...}`
 * expansions or extra kernel arguments.
 */
import { ValidationError } from '../errors.ts';
import { isUuid } from '../nodes/index.ts';

export type BootPurpose = 'deploy' | 'clean' | 'inspect' | 'discovery';

export type BootScriptPlan =
  | {
      readonly kind: 'ramdisk';
      readonly purpose: BootPurpose;
      readonly kernelUrl: string;
      readonly initrdUrl: string;
      readonly controllerUrl: string;
      /** Null for discovery: the node is not enrolled yet. */
      readonly nodeUuid: string | null;
      /** The per-deploy agent token; null for discovery. */
      readonly agentToken: string | null;
      /** Extra kernel arguments from config (console=..., ip=...). */
      readonly kernelArgs: readonly string[];
      /** With TLS on: where the agent fetches the controller's CA, and the sha256 (hex) it must have. */
      readonly ca?: { readonly sha256: string; readonly url: string };
    }
  | { readonly kind: 'local-disk' };

const SAFE_URL = /^https?:\/\/[A-Za-z0-9.:\-[\]]+(\/[A-Za-z0-9._~\-/%]*)?$/;
const SAFE_ARG = /^[A-Za-z0-9._~\-/:=,@+%]+$/;

function safe(value: string, pattern: RegExp, field: string): string {
  if (!pattern.test(value)) throw new ValidationError(field, 'contains characters not allowed in an iPXE script');
  return value;
}

function checkedUuid(value: string): string {
  if (!isUuid(value)) throw new ValidationError('nodeUuid', 'must be a node uuid');
  return value;
}

export function renderIpxeScript(plan: BootScriptPlan): string {
  if (plan.kind === 'local-disk') {
    // BIOS: hand the first disk to the firmware; UEFI: leave iPXE so the firmware boots the next entry.
    return [
      '#!ipxe',
      'echo Booting from local disk',
      'iseq ${platform} efi && goto efi ||',
      'sanboot --no-describe --drive 0x80 || goto efi',
      ':efi',
      'exit',
      '',
    ].join('\n');
  }
  const kernel = safe(plan.kernelUrl, SAFE_URL, 'kernelUrl');
  const initrd = safe(plan.initrdUrl, SAFE_URL, 'initrdUrl');
  const args = [
    'initrd=initrd',
    `bm.controller=${safe(plan.controllerUrl, SAFE_URL, 'controllerUrl')}`,
    `bm.purpose=${plan.purpose}`,
    ...(plan.nodeUuid ? [`bm.node=${checkedUuid(plan.nodeUuid)}`] : []),
    ...(plan.agentToken ? [`bm.token=${safe(plan.agentToken, /^[A-Za-z0-9_-]{16,128}$/, 'agentToken')}`] : []),
    ...(plan.ca
      ? [`bm.ca=${safe(plan.ca.sha256, /^[0-9a-f]{64}$/, 'ca.sha256')}`, `bm.ca_url=${safe(plan.ca.url, SAFE_URL, 'ca.url')}`]
      : []),
    ...plan.kernelArgs.map((a, i) => safe(a, SAFE_ARG, `kernelArgs[${i}]`)),
    // The NIC iPXE booted from, as pxelinux writes it: the ramdisk takes DHCP on that one (iPXE expands it).
    'BOOTIF=01-${netX/mac:hexhyp}',
  ];
  return [
    '#!ipxe',
    `echo Booting the ${plan.purpose} ramdisk${plan.nodeUuid ? ` for node ${plan.nodeUuid}` : ''}`,
    `kernel --name kernel ${kernel} ${args.join(' ')} || goto retry`,
    `initrd --name initrd ${initrd} || goto retry`,
    'boot || goto retry',
    ':retry',
    'echo Network boot failed, retrying in 10 seconds',
    'sleep 10',
    'reboot',
    '',
  ].join('\n');
}
