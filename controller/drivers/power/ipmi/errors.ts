/**
 * Why a datagram was not accepted. Decoders throw this and only this on bad
 * input, so callers can count drops by reason and keep serving.
 */
export type DecodeReason =
  | 'truncated'
  | 'not-rmcp'
  | 'auth-type'
  | 'length'
  | 'checksum'
  | 'integrity'
  | 'decrypt'
  | 'payload'
  | 'unsupported'
  | 'replay';

export class IpmiDecodeError extends Error {
  readonly reason: DecodeReason;
  constructor(reason: DecodeReason, message: string) {
    super(message);
    this.name = 'IpmiDecodeError';
    this.reason = reason;
  }
}
