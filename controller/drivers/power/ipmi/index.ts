/**
 * The native IPMI v2.0 (RMCP+) driver, and the wire codecs (commands, RAKP,
 * packets, crypto) the lab's virtual BMC answers with: the one folder that
 * speaks the protocol, on both ends.
 */
export { IpmiDriver, defaultSessionPool, type IpmiDriverOptions } from './driver.ts';
export { SessionPool, type SessionPoolOptions, type PoolStats } from './pool.ts';
export { IpmiDecodeError, type DecodeReason } from './errors.ts';
export {
  type BootFlags,
  CC_INSUFFICIENT_PRIVILEGE,
  CC_INVALID_COMMAND,
  CC_INVALID_DATA,
  CC_OK,
  CC_PARAMETER_NOT_SUPPORTED,
  CC_REQUEST_LENGTH,
  CHASSIS_CONTROL,
  CLOSE_SESSION,
  type CommandId,
  decodeBootFlags,
  GET_BOOT_OPTIONS,
  GET_CHANNEL_AUTH_CAPABILITIES,
  GET_CHANNEL_CIPHER_SUITES,
  GET_CHASSIS_STATUS,
  GET_DEVICE_ID,
  PRIVILEGE_OPERATOR,
  PRIVILEGE_USER,
  SET_BOOT_OPTIONS,
  SET_SESSION_PRIVILEGE,
} from './commands.ts';
export {
  type CipherSuite,
  deriveKeys,
  rakp2Code,
  rakp3Code,
  rakp4Icv,
  type RakpExchange,
  sameBytes,
  sessionIntegrityKey,
  type SessionKeys,
  suiteById,
  userKey,
} from './crypto.ts';
export { decodeRequest, encodeResponse, type IpmiRequest } from './message.ts';
export {
  decodeEnvelope,
  encodeV15,
  encodeV20,
  openPayload,
  PAYLOAD_IPMI,
  PAYLOAD_OPEN_SESSION_REQUEST,
  PAYLOAD_OPEN_SESSION_RESPONSE,
  PAYLOAD_RAKP1,
  PAYLOAD_RAKP2,
  PAYLOAD_RAKP3,
  PAYLOAD_RAKP4,
  type V20Envelope,
} from './packet.ts';
export {
  decodeOpenSessionRequest,
  decodeRakp1,
  decodeRakp3,
  encodeOpenSessionResponse,
  encodeRakp2,
  encodeRakp4,
  RAKP_INVALID_AUTH_ALG,
  RAKP_INVALID_INTEGRITY,
  RAKP_INVALID_ROLE,
  RAKP_NO_CIPHER_SUITE,
  RAKP_NO_RESOURCES,
  RAKP_OK,
  RAKP_UNAUTHORIZED_NAME,
  RAKP_UNAUTHORIZED_ROLE,
} from './rakp.ts';
export { SequenceWindow } from './window.ts';
