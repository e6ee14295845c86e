/** Pure parsers for ipmitool's text output (openipmi/ipmitool 1.8.19 wording). */
import type { BootDeviceSetting, PowerState } from '../types.ts';

export function parsePowerStatus(stdout: string): PowerState | null {
  const m = /Chassis Power is (on|off)/i.exec(stdout);
  return m ? (m[1]!.toLowerCase() as PowerState) : null;
}

const DEVICES: readonly [RegExp, string][] = [
  [/Force PXE/i, 'pxe'],
  [/Force Boot from default Hard-Drive/i, 'disk'],
  [/No override/i, 'default'],
  [/Force Boot from CD\/DVD/i, 'cdrom'],
  [/Force Boot into BIOS Setup/i, 'bios'],
];

/** `chassis bootparam get 5` (boot flags). */
export function parseBootFlags(stdout: string): BootDeviceSetting | null {
  const selector = /Boot Device Selector\s*:\s*(.+)/i.exec(stdout)?.[1];
  if (selector === undefined) return null;
  const device = DEVICES.find(([re]) => re.test(selector))?.[1] ?? selector.trim();
  return { device, persistent: /Options apply to all future boots/i.test(stdout), uefi: /BIOS EFI boot/i.test(stdout) };
}

export type FailureKind = 'auth' | 'timeout' | 'other';

/** Classifies a failed run from its verbose stderr: a wrong password and a dead BMC both end in the same last line. */
export function classifyFailure(stderr: string): FailureKind {
  if (
    /RAKP 2 HMAC is invalid|unauthorized name|invalid authentication algorithm|insufficient resources for session|RAKP 4 message has invalid integrity check|Invalid user name|Unauthorized/i.test(
      stderr,
    )
  )
    return 'auth';
  if (
    /Get Auth Capabilities error|No response from remote controller|Insufficient privilege level|Unable to get Channel Authentication Capabilities|timeout/i.test(
      stderr,
    )
  )
    return 'timeout';
  return 'other';
}
