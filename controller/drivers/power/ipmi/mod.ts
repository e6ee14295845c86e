/** The native IPMI v2.0 (RMCP+) driver: what the rest of the controller and the virtual BMC may import. */
export { IpmiDriver, defaultSessionPool, type IpmiDriverOptions } from './driver.ts';
export { SessionPool, type SessionPoolOptions, type PoolStats } from './pool.ts';
export { IpmiDecodeError, type DecodeReason } from './errors.ts';
