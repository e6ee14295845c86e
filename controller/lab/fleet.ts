/**
 * The lab's machinery, started on this machine: a real controller on a
 * database and NATS prefix of its own, serving network boot on loopback, and
 * N virtual machines, each a virtual BMC (IPMI 2.0 over UDP, driven by the
 * controller's native driver) with a sparse-file disk whose network boot runs
 * a real agent from the iPXE script the controller serves. Nothing here does
 * an operator's work (enroll, deploy ...): that goes through the API
 * (operator.ts).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ImageFormat } from '../images/index.ts';
import { freePort, startControllerProcess, type ControllerProcess } from './controller-process.ts';
import { makeLabTls } from './tls-certs.ts';
import { LAB_MAX_NODES } from './lab-state.ts';
import { loopbackBootToml } from './boot-toml.ts';
import { StartLimiter } from './start-limiter.ts';
import { repoRoot } from './paths.ts';
import { freeUdpPort } from './udp-port.ts';
import { RAMDISK_NODE_ARGS } from './agent-process.ts';
import { VirtualNode } from './virtual-node.ts';

const run = promisify(execFile);
const MIB = 1024 * 1024;

/** What an operator knows of a lab machine: its BMC, its MAC and the hardware on its label. */
export interface LabMachine {
  readonly name: string;
  readonly mac: string;
  readonly bmcAddress: string;
  readonly bmcPort: number;
  readonly bmcUser: string;
  readonly bmcPassword: string;
  readonly cpus: number;
  readonly memoryMb: number;
  readonly diskGb: number;
  /** The sparse file that is its disk. */
  readonly disk: string;
}

export interface LabImage {
  readonly file: string;
  readonly format: ImageFormat;
}

export interface LabFleetOptions {
  readonly nodes: number;
  /** Work directory (disks, agent roots, the image); removed by stop(). */
  readonly dir: string;
  readonly databaseUrl: string;
  readonly natsPrefix: string;
  readonly say: (message: string) => void;
  readonly logLevel?: string;
  /** Env for the controller process (e.g. a shared secret key). */
  readonly env?: Readonly<Record<string, string>>;
  /** The API with TLS (a CA made for this run, in dir/tls); on unless false. */
  readonly tls?: boolean;
}

export interface LabFleet {
  readonly controller: ControllerProcess;
  readonly machines: readonly VirtualNode[];
  readonly image: LabImage;
  describe(): LabMachine[];
  /** Stops the machines and the controller, drops the lab's database, removes the work directory. */
  stop(): Promise<void>;
}

/** A 64 MiB disk image with data scattered among holes, as qcow2 when qemu-img is here. */
async function makeImage(dir: string, say: (m: string) => void): Promise<LabImage> {
  const raw = path.join(dir, 'image.raw');
  const handle = await open(raw, 'w');
  try {
    await handle.truncate(64 * MIB);
    for (let mib = 0; mib < 64; mib += 5) await handle.write(randomBytes(MIB), 0, MIB, mib * MIB);
  } finally {
    await handle.close();
  }
  try {
    const qcow2 = path.join(dir, 'image.qcow2');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    return { file: qcow2, format: 'qcow2' };
  } catch {
    say('qemu-img is missing (Debian package qemu-utils): the lab image stays raw');
    return { file: raw, format: 'raw' };
  }
}

/**
 * The agent bundled as the ramdisk carries it (scripts/build-agent.sh): one
 * file starts much faster than the sources (docs/performance-notes.md), which is what a fleet
 * of machines booting at once on a few shared cores needs. Null without
 * esbuild; the machines then run the sources.
 */
export async function bundleAgent(dir: string, say: (m: string) => void): Promise<string | null> {
  const out = path.join(dir, 'agent/agent.js');
  try {
    await run(path.join(repoRoot, 'scripts/build-agent.sh'), [out], { cwd: repoRoot });
    return out;
  } catch (err) {
    say(`could not bundle the agent (${err instanceof Error ? err.message.split('\n')[0] : String(err)}): the machines run agent/main.ts`);
    return null;
  }
}

/**
 * Node's flags for the machines' agents: the ramdisk's (agent/main.ts: small
 * V8 heaps), and LAB_AGENT_NODE_ARGS (space-separated) when looking into
 * their CPU or memory.
 */
const AGENT_NODE_ARGS: readonly string[] = [
  ...RAMDISK_NODE_ARGS,
  ...(process.env.LAB_AGENT_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''),
];

/** The i-th machine's hardware: a mix of sizes, so best fit has something to choose from. */
function hardware(i: number): { cpus: number; memoryMb: number; diskGb: number } {
  return { cpus: 8 * (1 + (i % 4)), memoryMb: 16384, diskGb: 1 };
}

export async function startLabFleet(o: LabFleetOptions): Promise<LabFleet> {
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > LAB_MAX_NODES)
    throw new RangeError(`a lab has 1 to ${LAB_MAX_NODES} machines, not ${o.nodes}`);
  const machines: VirtualNode[] = [];
  let controller: ControllerProcess | null = null;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(machines.map((m) => m.stop().catch(() => undefined)));
    await controller?.stop().catch(() => undefined);
    await rm(o.dir, { recursive: true, force: true });
  };
  try {
    const httpPort = await freePort();
    // The lab's machines do not run the deploy kernel and ramdisk; a real fleet's go into http_root (or the image store as aki/ari).
    const bootToml = await loopbackBootToml({ dir: o.dir, httpPort, tftpPort: await freeUdpPort() });
    const tls = o.tls === false ? null : await makeLabTls(path.join(o.dir, 'tls'));
    o.say(
      `starting a controller on its own database${tls ? ', its API with TLS (a CA made for this lab)' : ''}, with HTTP and TFTP boot on loopback`,
    );
    controller = await startControllerProcess({
      tls: tls ?? false,
      databaseUrl: o.databaseUrl,
      natsPrefix: o.natsPrefix,
      logLevel: o.logLevel ?? 'warn',
      ...(o.env ? { env: o.env } : {}),
      extraToml: [
        '[conductor]',
        'callback_timeout_s = 300',
        'poll_ms = 200',
        '[power]',
        'sync_interval_s = 10',
        'call_timeout_s = 5',
        'settle_timeout_s = 20',
        bootToml,
      ].join('\n'),
    });
    const image = await makeImage(o.dir, o.say);
    const agentScript = await bundleAgent(o.dir, o.say);
    o.say(`starting ${o.nodes} virtual machine(s), each with its own virtual BMC on 127.0.0.1`);
    const starts = new StartLimiter(2 * os.availableParallelism());
    for (let i = 1; i <= o.nodes; i++) {
      const hex = i.toString(16).padStart(4, '0');
      const name = `lab-node-${String(i).padStart(3, '0')}`;
      const machine = new VirtualNode({
        name,
        mac: `52:54:00:00:${hex.slice(0, 2)}:${hex.slice(2)}`,
        // Fresh per lab: the lab's BMCs listen on loopback, where any local user can reach them.
        bmcPassword: randomBytes(12).toString('base64url'),
        diskBytes: 128 * MIB,
        dir: path.join(o.dir, 'machines', name),
        bootUrl: `http://127.0.0.1:${httpPort}`,
        say: o.say,
        starts,
        ...(agentScript ? { agentScript, agentCompileCache: path.join(o.dir, 'agent/compile-cache') } : {}),
        agentNodeArgs: AGENT_NODE_ARGS,
      });
      await machine.start();
      machines.push(machine);
    }
    const ctl = controller;
    return {
      controller: ctl,
      machines,
      image,
      describe: () =>
        machines.map((m, i) => ({
          name: m.o.name,
          mac: m.o.mac,
          bmcAddress: m.bmc.address,
          bmcPort: m.bmc.port,
          bmcUser: 'admin',
          bmcPassword: m.o.bmcPassword,
          disk: m.disk,
          ...hardware(i),
        })),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
