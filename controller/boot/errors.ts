/**
 * Typed errors of the network-boot services. Parsers throw these for bad
 * wire input; the servers catch them, count the packet as dropped and keep
 * serving everyone else.
 */
import { BmError, type ErrorContext } from '../errors.ts';

/** A datagram that does not parse as the protocol says. */
export class MalformedPacketError extends BmError {
  readonly protocol: 'dhcp' | 'tftp';
  constructor(protocol: 'dhcp' | 'tftp', message: string, context: ErrorContext = {}) {
    super('invalid-argument', `malformed ${protocol} packet: ${message}`, { ...context, protocol });
    this.protocol = protocol;
  }
}

/** A path that would leave a served root (`..`, absolute, symlink escape). */
export class PathOutsideRootError extends BmError {
  constructor(requested: string, root: string) {
    super('permission-denied', `path "${requested}" is outside the served root`, { requested, root });
  }
}

/** A lease that cannot be committed because another MAC holds the address. */
export class LeaseConflictError extends BmError {
  constructor(ip: string, mac: string, holder: string) {
    super('conflict', `address ${ip} is leased to ${holder}, not ${mac}`, { ip, mac, holder });
  }
}

/** A blob the boot port does not serve: only kernels and ramdisks travel there (tenant images go over the authenticated block stream). */
export class NotBootBlobError extends BmError {
  constructor(name: string, format: string) {
    super('permission-denied', `image "${name}" is ${format}: only kernels and ramdisks (aki, ari) are served for boot`, { name, format });
  }
}

/** A boot setting that is missing or contradicts another; names the `[boot]` key to fix. */
export class BootConfigError extends BmError {
  readonly key: string;
  constructor(key: string, message: string) {
    super('invalid-argument', `[boot] ${key}: ${message}`, { key });
    this.key = key;
  }
}
