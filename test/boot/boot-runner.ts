/**
 * Runs our boot servers as a child process, so a test can start them inside
 * a network namespace (`ip netns exec NS node test/boot/boot-runner.ts JSON`).
 * Prints one JSON line {"ready":...} when listening; a line "stats" on stdin
 * prints {"stats":...}; SIGTERM closes everything.
 */
import { createInterface } from 'node:readline';
import { DirectoryFileSource } from '../../controller/boot/tftp/file-source.ts';
import { TftpServer } from '../../controller/boot/tftp/server.ts';
import { IpxeOverlayFileSource } from '../../controller/boot/tftp/ipxe-file-source.ts';
import type { NodeBootState } from '../../controller/boot/boot-plan.ts';
import { DirectoryBlobSource } from '../../controller/boot/http/blob-source.ts';
import { HttpBootServer } from '../../controller/boot/http/server.ts';
import { LeaseGate, NetworkGate, parseCidr } from '../../controller/boot/http/client-gate.ts';
import type { BootBackend } from '../../controller/boot/backend.ts';
import { startDhcpFromRunnerConfig, type RunnerDhcpConfig } from './runner-dhcp.ts';

export interface RunnerConfig {
  readonly tftp?: {
    readonly root: string;
    readonly address?: string;
    readonly port?: number;
    readonly timeoutMs?: number;
    /** Serve these iPXE names from this directory (links resolved at start), as the controller does. */
    readonly ipxe?: { readonly dir: string; readonly names: readonly string[] };
  };
  readonly dhcp?: RunnerDhcpConfig;
  readonly http?: {
    readonly root: string;
    readonly address?: string;
    readonly port: number;
    /** As nodes reach us: http://ADDRESS:PORT */
    readonly httpBase: string;
    readonly discovery: boolean;
    readonly kernelArgs?: readonly string[];
    readonly states: readonly (NodeBootState & { readonly mac: string })[];
    /** Who may fetch /images/: lease holders of the runner's DHCP when it is in full mode, else these networks. */
    readonly provisioningNetworks?: readonly string[];
  };
}

const config = JSON.parse(process.argv[2] ?? '{}') as RunnerConfig;
const closers: (() => Promise<void>)[] = [];
const statsOf: Record<string, () => unknown> = {};

const ready: Record<string, unknown> = {};

if (config.tftp) {
  const server = new TftpServer({
    source: config.tftp.ipxe
      ? await IpxeOverlayFileSource.create(new DirectoryFileSource(config.tftp.root), config.tftp.ipxe.dir, config.tftp.ipxe.names)
      : new DirectoryFileSource(config.tftp.root),
    address: config.tftp.address ?? '0.0.0.0',
    port: config.tftp.port ?? 69,
    ...(config.tftp.timeoutMs ? { timeoutMs: config.tftp.timeoutMs } : {}),
  });
  ready.tftp = await server.start();
  closers.push(() => server.close());
  statsOf.tftp = () => server.stats;
}
let leaseHolders: BootBackend | null = null;
if (config.dhcp) {
  const started = await startDhcpFromRunnerConfig(config.dhcp);
  if (config.dhcp.mode === 'full') leaseHolders = started.backend;
  ready.dhcp = started.addresses;
  closers.push(started.close);
  statsOf.dhcp = started.stats;
}

if (config.http) {
  const h = config.http;
  const states = new Map(h.states.map((s) => [s.mac, s]));
  const server = new HttpBootServer({
    states: { bootStateFor: async (mac) => states.get(mac) ?? null },
    blobs: new DirectoryBlobSource(h.root),
    clients: leaseHolders ? new LeaseGate(leaseHolders) : new NetworkGate((h.provisioningNetworks ?? []).map((n) => parseCidr(n)!)),
    plan: {
      httpBase: h.httpBase,
      controllerUrl: h.httpBase,
      defaultKernel: 'deploy/vmlinuz',
      defaultRamdisk: 'deploy/initrd',
      discovery: h.discovery,
      kernelArgs: h.kernelArgs ?? ['console=ttyS0'],
    },
    address: h.address ?? '0.0.0.0',
    port: h.port,
  });
  ready.http = await server.start();
  closers.push(() => server.close());
  statsOf.http = () => server.stats;
}

process.stdout.write(JSON.stringify({ ready }) + '\n');

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'stats') return;
  void (async () => {
    const stats: Record<string, unknown> = {};
    for (const [k, f] of Object.entries(statsOf)) stats[k] = await f();
    process.stdout.write(JSON.stringify({ stats }) + '\n');
  })();
});

const shutdown = async (): Promise<void> => {
  for (const close of closers) await close().catch(() => undefined);
  process.exit(0);
};
process.on('SIGTERM', () => void shutdown());
process.on('SIGINT', () => void shutdown());
