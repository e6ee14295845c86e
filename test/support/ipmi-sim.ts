/**
 * Starts OpenIPMI's ipmi_sim (Debian `openipmi`) as a BMC on 127.0.0.1 with a
 * chassis-control program that keeps power and boot device in files, as
 * ../shared/PEERS.md describes. Stopped by PID, its directory removed.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freeUdpPort } from '../../controller/lab/index.ts';

export interface IpmiSim {
  readonly address: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly dir: string;
  /** The power state as the simulated chassis has it ("1" on, "0" off). */
  chassisPower(): Promise<string>;
  /** Changes power behind the controller's back, as a person at the machine would. */
  setChassisPower(on: boolean): Promise<void>;
  stop(): Promise<void>;
}

const CHASSIS = `#!/bin/sh
d=$(dirname "$0")
case $1 in get|set) ;; *) shift;; esac
op=$1; shift
case $op in
  get) for p; do case $p in
         power) echo "power:$(cat "$d/power" 2>/dev/null || echo 0)";;
         boot)  echo "boot:$(cat "$d/boot" 2>/dev/null || echo default)";;
         *) echo "Invalid parameter: $p"; exit 1;; esac; done;;
  set) while [ $# -ge 2 ]; do case $1 in
         power|boot) echo "$2" > "$d/$1";;
         reset) ;;
         *) echo "Invalid parameter: $1"; exit 1;; esac; shift 2; done;;
  *) exit 1;;
esac
`;

export function requireBinary(name: string, pkg: string): void {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${name} is missing: apt-get install ${pkg} (scripts/setup.sh installs it)`);
  }
}

export async function startIpmiSim(password = 'password'): Promise<IpmiSim> {
  requireBinary('ipmi_sim', 'openipmi');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bm-ipmisim-'));
  const port = await freeUdpPort();
  await writeFile(path.join(dir, 'chassis.sh'), CHASSIS);
  await chmod(path.join(dir, 'chassis.sh'), 0o755);
  await writeFile(
    path.join(dir, 'lan.conf'),
    `name "bmc"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 ${port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "${path.join(dir, 'chassis.sh')}"
  user 2 true  "admin"   "${password}" admin    10       none md2 md5 straight
`,
  );
  await writeFile(
    path.join(dir, 'sim.emu'),
    'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n',
  );
  const child: ChildProcess = spawn(
    'ipmi_sim',
    ['-c', path.join(dir, 'lan.conf'), '-f', path.join(dir, 'sim.emu'), '-n', '-s', path.join(dir, 'state')],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
  // ipmi_sim opens its socket within a few ms; give it a moment before the first packet.
  await new Promise((r) => setTimeout(r, 300));
  if (child.exitCode !== null) throw new Error(`ipmi_sim exited at start with ${child.exitCode}`);
  return {
    address: '127.0.0.1',
    port,
    user: 'admin',
    password,
    dir,
    chassisPower: async () => (await readFile(path.join(dir, 'power'), 'utf8').catch(() => '0')).trim(),
    setChassisPower: (on) => writeFile(path.join(dir, 'power'), on ? '1\n' : '0\n'),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
