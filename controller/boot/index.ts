/**
 * The public face of network boot: what the controller and the conductor may
 * import. Everything else in controller/boot is internal to its protocol.
 */
export type { AddressPool, AllocateRequest, BootBackend, BootNode, Lease } from './backend.ts';
export { MemoryBootBackend } from './memory-backend.ts';
export { bootConfigSchema, type BootConfig } from './config.ts';
export { BootConfigError, LeaseConflictError, MalformedPacketError, NotBootBlobError, PathOutsideRootError } from './errors.ts';
export {
  planBoot,
  type AgentCa,
  type BootPlanConfig,
  type BootProvisionState,
  type BootStateSource,
  type NodeBootState,
} from './boot-plan.ts';
export { renderIpxeScript, type BootPurpose, type BootScriptPlan } from './ipxe-script.ts';
export { DhcpServer, type DhcpMode, type DhcpRange, type DhcpServerOptions, type DhcpStats } from './dhcp/server.ts';
export { TftpServer, type TftpServerOptions } from './tftp/server.ts';
export type { TftpStats } from './tftp/stats.ts';
export { DirectoryFileSource, type TftpFile, type TftpFileSource } from './tftp/file-source.ts';
export { HttpBootServer, type HttpBootOptions, type HttpBootStats } from './http/server.ts';
export { DirectoryBlobSource, type BlobSource, type ServedBlob } from './http/blob-source.ts';
export { IpxeOverlayFileSource } from './tftp/ipxe-file-source.ts';
export { bootClientGate, bootPlanConfig, startBootServices, type BootServiceDeps, type BootServices } from './services.ts';
export { LeaseGate, NetworkGate, parseCidr, type BootClientGate, type LeaseHolders } from './http/client-gate.ts';
export { intToIp, ipToInt } from './dhcp/options.ts';
export type { InstanceDocuments, MetadataSource } from './http/metadata.ts';
