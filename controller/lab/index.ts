/**
 * The virtual fleet of `bmctl lab`: virtual BMCs (IPMI 2.0 over UDP), virtual
 * machines whose network boot runs the real agent, and the starters for the
 * controller and agent processes. Tests and benchmarks import it from here.
 */
export { bmctlPath, machineRoot, repoRoot } from './paths.ts';
export { RAMDISK_NODE_ARGS, startAgentProcess, type AgentCpu, type AgentProcess, type AgentProcessOptions } from './agent-process.ts';
export { cpuSecondsOf } from './proc-cpu.ts';
export { agentStreamCounters, agentStreamStarts, type AgentStreamCounters, type AgentStreamStart } from './agent-counters.ts';
export {
  freePort,
  natsUrl,
  runBmctl,
  startControllerProcess,
  uniqueDatabaseUrl,
  uniqueNatsPrefix,
  type CliResult,
  type ControllerProcess,
  type StartOptions,
  type TlsFiles,
} from './controller-process.ts';
export { ensureSuiteTls, prepareSuiteTls, suiteTls, SUITE_TLS_DIR_ENV, type SuiteTls } from './suite-tls.ts';
export { makeCa, makeServerCert, type CaFiles } from './tls-certs.ts';
export { freeUdpPort } from './udp-port.ts';
export { StartLimiter } from './start-limiter.ts';
export { loopbackBootToml, type LoopbackBoot } from './boot-toml.ts';
export { sha256OfFilePrefix } from './file-sha.ts';
export { VirtualNode, type RamdiskBoot, type VirtualNodeOptions } from './virtual-node.ts';
export {
  VirtualBmc,
  type PowerCause,
  type PowerChange,
  type VirtualBmcOptions,
  type VirtualBmcStats,
  type VirtualBmcUser,
} from './vbmc/virtual-bmc.ts';
export { startFleet, startVirtualBmc, type VirtualBmcServer, type VirtualFleet } from './vbmc/server.ts';
export { bundleAgent, startLabFleet, type LabFleet, type LabFleetOptions, type LabImage, type LabMachine } from './fleet.ts';
export {
  bootAll,
  createFlavor,
  enroll,
  instanceName,
  LabStepError,
  LAB_FLAVOR,
  LAB_IMAGE,
  provisionAll,
  uploadImage,
  type BootOutcome,
  type ProgressListener,
} from './operator.ts';
export { isLabProcess, LAB_MAX_NODES, labStateDir, logFile, readLabState, stateFile, type LabState } from './lab-state.ts';
