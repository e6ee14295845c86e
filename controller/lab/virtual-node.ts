/**
 * A machine of the virtual lab: a virtual BMC, a disk (a sparse file) and
 * what its firmware does at power-on. Booting from the network it does what
 * iPXE does after DHCP: fetch /boot/<mac>.ipxe from the controller's HTTP
 * boot server and the kernel and initrd it names; a ramdisk script becomes a
 * running deploy agent whose kernel command line (a /proc/cmdline in the
 * agent's root) is the script's, token included, so the agent looks itself
 * up and heartbeats exactly as in a real ramdisk. A local-disk script, or a
 * boot from disk, ends the agent: the machine runs its image.
 */
import { cp, mkdir, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startAgentProcess, type AgentProcess } from './agent-process.ts';
import { machineRoot } from './paths.ts';
import type { StartLimiter } from './start-limiter.ts';
import { startVirtualBmc, type VirtualBmcServer } from './vbmc/server.ts';
import { freePort } from './controller-process.ts';
import type { PowerChange } from './vbmc/virtual-bmc.ts';

export interface VirtualNodeOptions {
  readonly name: string;
  readonly mac: string;
  readonly bmcPassword: string;
  readonly diskBytes: number;
  readonly dir: string;
  /** http://host:port of the controller's HTTP boot server. */
  readonly bootUrl: string;
  readonly say: (message: string) => void;
  /** The agent as the ramdisk carries it (the esbuild bundle); absent: agent/main.ts from the sources. */
  readonly agentScript?: string;
  /** Options for node itself when it runs the agent (the ramdisk's V8 heap limits). */
  readonly agentNodeArgs?: readonly string[];
  /** Node's compile cache for the agent: a machine's second ramdisk boot starts faster, as a cached ramdisk would. */
  readonly agentCompileCache?: string;
  /** Shared by a lab's machines: bounds how many start their ramdisk at once. */
  readonly starts?: StartLimiter;
  /**
   * The address the agent listening on 127.0.0.1:`port` advertises to the controller; default that
   * address itself. Tests put a forwarder there to watch what the controller dials.
   */
  readonly agentAddress?: (port: number) => Promise<string>;
}

/** Ramdisk start attempts per network boot (iPXE's `goto retry`), each within AGENT_LISTEN_MS. */
const BOOT_ATTEMPTS = 3;
const AGENT_LISTEN_MS = 60_000;

export interface RamdiskBoot {
  readonly nodeUuid: string;
  readonly token: string;
  readonly agent: AgentProcess;
}

export class VirtualNode {
  readonly o: VirtualNodeOptions;
  readonly disk: string;
  bmc!: VirtualBmcServer;
  #agent: AgentProcess | null = null;
  #ramdisk: RamdiskBoot | null = null;
  #booting: Promise<void> = Promise.resolve();
  #waiters: ((boot: RamdiskBoot) => void)[] = [];
  /** Every ramdisk agent this machine ran, oldest first: their logs (and byte counters) outlive them. */
  readonly agentsRun: AgentProcess[] = [];
  /** The last boot's failure, for the lab to report. */
  lastBootError: string | null = null;
  /** false: the NIC never network-boots (a cable pulled, PXE off in the firmware); tests use it. */
  networkBoot = true;

  constructor(options: VirtualNodeOptions) {
    this.o = options;
    this.disk = path.join(options.dir, 'disk.img');
  }

  async start(): Promise<void> {
    await mkdir(this.o.dir, { recursive: true });
    await writeFile(this.disk, '');
    await truncate(this.disk, this.o.diskBytes);
    await this.startBmc();
  }

  /** Starts the BMC (again), on `port` when given: a BMC that was unreachable comes back where it was. */
  async startBmc(port?: number): Promise<void> {
    this.bmc = await startVirtualBmc({
      ...(port !== undefined ? { port } : {}),
      name: this.o.name,
      users: [{ name: 'admin', password: this.o.bmcPassword, privilege: 4 }],
      power: 'off',
      onPowerChange: (change) => {
        // Power events arrive in order; each boot waits for the previous one's teardown.
        this.#booting = this.#booting
          .then(() => this.#onPower(change))
          .catch((err: unknown) => {
            this.lastBootError = err instanceof Error ? err.message : String(err);
            this.o.say(`${this.o.name}: boot failed: ${this.lastBootError}`);
          });
      },
    });
  }

  /** The BMC stops answering (a dead BMC, a cut management network). */
  async stopBmc(): Promise<void> {
    await this.bmc.close();
  }

  /** Resolves when the node runs the deploy ramdisk (now, or after its next network boot). */
  ramdisk(): Promise<RamdiskBoot> {
    if (this.#ramdisk) return Promise.resolve(this.#ramdisk);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  async #onPower(change: PowerChange): Promise<void> {
    await this.#stopAgent();
    if (change.power === 'off') {
      this.o.say(`${this.o.name}: powered off (${change.cause})`);
      return;
    }
    if (change.bootDevice !== 'pxe') {
      this.o.say(`${this.o.name}: powered on (${change.cause}), booting from its disk`);
      return;
    }
    if (!this.networkBoot) {
      this.o.say(`${this.o.name}: powered on (${change.cause}), but network boot is off: nothing boots`);
      return;
    }
    const script = await this.#fetch(`${this.o.bootUrl}/boot/${this.o.mac}.ipxe`);
    if (script === null) {
      this.o.say(`${this.o.name}: network boot: the controller has nothing for ${this.o.mac}; iPXE would retry`);
      return;
    }
    if (!script.includes('kernel ')) {
      this.o.say(`${this.o.name}: network boot: told to boot from its local disk`);
      return;
    }
    const kernel = /^kernel --name kernel (\S+) (.*?) \|\| goto retry$/m.exec(script);
    const initrd = /^initrd --name initrd (\S+) \|\| goto retry$/m.exec(script);
    if (!kernel || !initrd) throw new Error('the iPXE script has no kernel/initrd line');
    for (const url of [kernel[1]!, initrd[1]!]) {
      if ((await this.#fetch(url)) === null) throw new Error(`${url} is not served`);
    }
    const cmdline = kernel[2]!;
    const arg = (name: string): string => new RegExp(`(?:^| )${name}=(\\S+)`).exec(cmdline)?.[1] ?? '';
    const root = path.join(this.o.dir, 'root');
    // A ramdisk's view of this machine: the lab machine's /proc and /sys with this node's MAC and command line.
    await cp(machineRoot, root, { recursive: true, force: true });
    await writeFile(path.join(root, 'sys/class/net/enp1s0/address'), `${this.o.mac}\n`);
    await writeFile(path.join(root, 'proc/cmdline'), `${cmdline}\n`);
    this.#agent = await this.#startAgent(root);
    this.agentsRun.push(this.#agent);
    const boot = { nodeUuid: arg('bm.node'), token: arg('bm.token'), agent: this.#agent };
    this.#ramdisk = boot;
    this.o.say(`${this.o.name}: network boot: ${arg('bm.purpose')} ramdisk running, agent on ${this.#agent.address}`);
    for (const w of this.#waiters.splice(0)) w(boot);
  }

  async #startAgent(root: string): Promise<AgentProcess> {
    for (let attempt = 1; ; attempt++) {
      try {
        const start = async (): Promise<AgentProcess> => {
          const port = await freePort();
          const advertised = this.o.agentAddress ? await this.o.agentAddress(port) : `127.0.0.1:${port}`;
          return startAgentProcess({
            token: '',
            target: this.disk,
            targetZeroed: true,
            root,
            port,
            register: true,
            listenTimeoutMs: AGENT_LISTEN_MS,
            ...(this.o.agentScript ? { script: this.o.agentScript } : {}),
            ...(this.o.agentNodeArgs ? { nodeArgs: this.o.agentNodeArgs } : {}),
            ...(this.o.agentCompileCache ? { env: { NODE_COMPILE_CACHE: this.o.agentCompileCache } } : {}),
            // Advertised to the controller, which dials it: loopback, like the listen address.
            extraArgs: ['--advertise', advertised, '--heartbeat-interval', '2', '--reboot-command', 'true', '--poweroff-command', 'true'],
          });
        };
        return await (this.o.starts ? this.o.starts.run(start) : start());
      } catch (err) {
        if (attempt >= BOOT_ATTEMPTS) throw err;
        this.o.say(
          `${this.o.name}: ramdisk did not start (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); retrying as iPXE would`,
        );
      }
    }
  }

  async #fetch(url: string): Promise<string | null> {
    const res = await fetch(url);
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
    return res.text();
  }

  async #stopAgent(): Promise<void> {
    const agent = this.#agent;
    this.#agent = null;
    this.#ramdisk = null;
    if (agent) await agent.stop();
  }

  async stop(): Promise<void> {
    await this.#booting.catch(() => undefined);
    await this.#stopAgent();
    await this.bmc?.close();
  }
}
