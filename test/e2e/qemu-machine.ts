/**
 * A QEMU x86-64 machine (TCG) for the end-to-end tests, and the BMC that
 * powers it: OpenIPMI's ipmi_sim (never the project's virtual BMC) with a
 * chassis_control program that starts QEMU on "set power 1", stops it on
 * "set power 0", and boots it from the network or its disk as the last
 * "set boot" said (../../../shared/PEERS.md has how that program is called).
 * Every power-on appends a line "<epoch s> power on, boot <device>" to
 * power.log; the serial console of every boot goes to one serial.log.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stopChild } from '../boot/netns.ts';
import { requirePeer } from '../boot/peers.ts';
import { requireBinary } from '../support/ipmi-sim.ts';

export interface MachineSpec {
  readonly name: string;
  readonly mac: string;
  readonly tap: string;
  /** A raw disk file (sparse). */
  readonly disk: string;
  readonly diskBytes: number;
  readonly memoryMb: number;
  readonly cpus: number;
  readonly dir: string;
}

export const serialLogOf = (m: MachineSpec): string => path.join(m.dir, 'serial.log');

/** QEMU's arguments; `bootOrder` n = network first, c = disk. */
export function qemuArgs(m: MachineSpec, bootOrder: 'n' | 'c'): string[] {
  return [
    '-accel',
    'tcg',
    '-machine',
    'pc',
    '-m',
    String(m.memoryMb),
    '-smp',
    String(m.cpus),
    '-nographic',
    '-monitor',
    'none',
    '-no-user-config',
    '-nodefaults',
    '-chardev',
    `file,id=console,path=${serialLogOf(m)},append=on`,
    '-serial',
    'chardev:console',
    '-boot',
    `order=${bootOrder}`,
    '-netdev',
    `tap,id=n0,ifname=${m.tap},script=no,downscript=no`,
    '-device',
    `virtio-net-pci,netdev=n0,mac=${m.mac}`,
    '-drive',
    `file=${m.disk},if=virtio,format=raw,cache=unsafe`,
  ];
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

function chassisProgram(m: MachineSpec, qemu: string): string {
  const base = (order: string): string => [qemu, ...qemuArgs(m, order as 'n' | 'c')].map(quote).join(' ');
  return `#!/bin/bash
# ipmi_sim's chassis_control for ${m.name}: must answer at once (ipmi_sim waits for it).
d=${quote(m.dir)}
case $1 in get|set) ;; *) shift;; esac
op=$1; shift
running() { [ -f "$d/vm.pid" ] && kill -0 "$(cat "$d/vm.pid")" 2>/dev/null; }
start_vm() {
  for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do running || break; sleep 0.1; done
  boot=$(cat "$d/boot" 2>/dev/null || echo default)
  echo "$(date +%s.%N) power on, boot $boot" >> "$d/power.log"
  # Started with ipmi_sim's descriptors closed: its UDP socket must not outlive it in QEMU.
  if [ "$boot" = pxe ]; then
    (for f in /proc/$BASHPID/fd/*; do f=\${f##*/}; [ "$f" -gt 2 ] && eval "exec $f>&-"; done
     exec ${base('n')} </dev/null >>"$d/qemu.log" 2>&1) &
  else
    (for f in /proc/$BASHPID/fd/*; do f=\${f##*/}; [ "$f" -gt 2 ] && eval "exec $f>&-"; done
     exec ${base('c')} </dev/null >>"$d/qemu.log" 2>&1) &
  fi
  echo $! > "$d/vm.pid"
}
stop_vm() { if running; then kill "$(cat "$d/vm.pid")"; echo "$(date +%s.%N) power off" >> "$d/power.log"; fi; }
case $op in
  get) for p; do case $p in
         power) if running; then echo power:1; else echo power:0; fi;;
         boot) echo "boot:$(cat "$d/boot" 2>/dev/null || echo default)";;
         *) echo "Invalid parameter: $p"; exit 1;; esac; done;;
  set) while [ $# -ge 2 ]; do case $1 in
         power) if [ "$2" = 1 ]; then running || start_vm; else stop_vm; fi;;
         boot) echo "$2" > "$d/boot";;
         reset) stop_vm; start_vm;;
         shutdown|identify) ;;
         *) echo "Invalid parameter: $1"; exit 1;; esac; shift 2; done;;
  *) exit 1;;
esac
`;
}

export interface QemuBmc {
  readonly address: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** "<epoch s> power on, boot pxe" lines, one per power-on. */
  powerLog(): Promise<string>;
  stop(): Promise<void>;
}

async function killVm(dir: string): Promise<void> {
  const pid = Number((await readFile(path.join(dir, 'vm.pid'), 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** ipmi_sim on the namespace's loopback (127.0.0.1:623), powering a QEMU machine. */
export async function startQemuBmc(ns: string, m: MachineSpec, password: string): Promise<QemuBmc> {
  requireBinary('ipmi_sim', 'openipmi');
  const qemu = requirePeer('/usr/bin/qemu-system-x86_64');
  requirePeer('/usr/lib/ipxe/qemu/pxe-virtio.rom');
  const program = path.join(m.dir, 'chassis.sh');
  await writeFile(program, chassisProgram(m, qemu));
  await chmod(program, 0o755);
  await writeFile(
    path.join(m.dir, 'lan.conf'),
    `name "${m.name}"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "${program}"
  user 2 true  "admin"   "${password}" admin    10       none md2 md5 straight
`,
  );
  await writeFile(
    path.join(m.dir, 'sim.emu'),
    'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n',
  );
  const child: ChildProcess = spawn(
    'ip',
    ['netns', 'exec', ns, 'ipmi_sim', '-c', path.join(m.dir, 'lan.conf'), '-f', path.join(m.dir, 'sim.emu'), '-n', '-s', m.dir],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
  await new Promise((r) => setTimeout(r, 300));
  if (child.exitCode !== null) throw new Error(`ipmi_sim exited at start with ${child.exitCode}`);
  return {
    address: '127.0.0.1',
    port: 623,
    user: 'admin',
    password,
    powerLog: async () => readFile(path.join(m.dir, 'power.log'), 'utf8').catch(() => ''),
    async stop() {
      await stopChild(child);
      await killVm(m.dir);
    },
  };
}

/** A machine nobody enrolled, switched on by hand (no BMC): it network-boots. */
export function startUnmanagedMachine(ns: string, m: MachineSpec): ChildProcess {
  const qemu = requirePeer('/usr/bin/qemu-system-x86_64');
  return spawn('ip', ['netns', 'exec', ns, qemu, ...qemuArgs(m, 'n')], { stdio: ['ignore', 'ignore', 'pipe'] });
}
