/**
 * What a MAC should boot, decided from the node's state (pure). The store
 * side (BootStateSource) is implemented by the conductor over MySQL: it
 * resolves the flavor's deploy kernel/ramdisk or leaves them null for the
 * configured defaults.
 */
import type { BootPurpose, BootScriptPlan } from './ipxe-script.ts';

export type BootProvisionState = 'deploying' | 'cleaning' | 'inspecting' | 'active' | 'other';

export interface NodeBootState {
  readonly nodeUuid: string;
  readonly provisionState: BootProvisionState;
  readonly agentToken: string | null;
  /** Blob names (under /images/) of the flavor's deploy kernel and ramdisk, or null for the defaults. */
  readonly deployKernel: string | null;
  readonly deployRamdisk: string | null;
}

export interface BootStateSource {
  /** The enrolled node owning this MAC, or null when the MAC is unknown. */
  /** `peek`: only look (diagnose): no armed token is handed out; agentToken is then a placeholder when one would be. */
  bootStateFor(mac: string, options?: { readonly peek?: boolean }): Promise<NodeBootState | null>;
}

export interface BootPlanConfig {
  /** Base of the HTTP boot server as nodes reach it, e.g. http://10.0.0.1:6386 */
  readonly httpBase: string;
  readonly controllerUrl: string;
  readonly defaultKernel: string;
  readonly defaultRamdisk: string;
  readonly discovery: boolean;
  readonly kernelArgs: readonly string[];
  /** With API TLS on: the CA agents verify the controller against, served at /ca.pem (public data). */
  readonly agentCa?: AgentCa;
}

export interface AgentCa {
  readonly pem: Buffer;
  /** sha256 of `pem`, lowercase hex: what goes on the ramdisk's command line as bm.ca=. */
  readonly sha256: string;
}

/** The path the HTTP boot port serves the agent CA at. */
export const AGENT_CA_PATH = '/ca.pem';

const PURPOSE: Partial<Record<BootProvisionState, BootPurpose>> = { deploying: 'deploy', cleaning: 'clean', inspecting: 'inspect' };

export function planBoot(state: NodeBootState | null, config: BootPlanConfig): BootScriptPlan | null {
  const ca = config.agentCa ? { ca: { sha256: config.agentCa.sha256, url: `${config.httpBase}${AGENT_CA_PATH}` } } : {};
  const image = (name: string): string => `${config.httpBase}/images/${name.split('/').map(encodeURIComponent).join('/')}`;
  if (state === null) {
    if (!config.discovery) return null;
    return {
      kind: 'ramdisk',
      purpose: 'discovery',
      kernelUrl: image(config.defaultKernel),
      initrdUrl: image(config.defaultRamdisk),
      controllerUrl: config.controllerUrl,
      nodeUuid: null,
      agentToken: null,
      kernelArgs: config.kernelArgs,
      ...ca,
    };
  }
  if (state.provisionState === 'active') return { kind: 'local-disk' };
  const purpose = PURPOSE[state.provisionState];
  if (purpose === undefined) return null;
  return {
    kind: 'ramdisk',
    purpose,
    kernelUrl: image(state.deployKernel ?? config.defaultKernel),
    initrdUrl: image(state.deployRamdisk ?? config.defaultRamdisk),
    controllerUrl: config.controllerUrl,
    nodeUuid: state.nodeUuid,
    agentToken: state.agentToken,
    kernelArgs: config.kernelArgs,
    ...ca,
  };
}
