/**
 * The record a running lab leaves for `bmctl lab up|down`: who to stop (the
 * lab process, leader of its own process group), what to drop (its database)
 * and what an operator needs to use it (the API address and token, the
 * machines' BMCs). Kept in the user's state directory, mode 0600: it holds
 * the admin token and the lab BMCs' passwords.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { LabImage, LabMachine } from './fleet.ts';

/** A lab's size limit: each machine is a BMC socket and, while in its ramdisk, an agent process on this one host. */
export const LAB_MAX_NODES = 200;

export interface LabState {
  /** The lab process; its process group holds the controller and the agents. */
  readonly pid: number;
  readonly url: string;
  readonly token: string;
  /** The CA file the lab's API is verified with (absent: plaintext). */
  readonly ca?: string;
  readonly databaseUrl: string;
  readonly natsPrefix: string;
  readonly controllerPid: number;
  readonly dir: string;
  readonly image: LabImage;
  readonly machines: readonly LabMachine[];
}

/** `$XDG_STATE_HOME/bmctl/lab` (default `~/.local/state/bmctl/lab`). */
export function labStateDir(env: Readonly<Record<string, string | undefined>>): string {
  const base = env.XDG_STATE_HOME || path.join(env.HOME || os.homedir(), '.local/state');
  return path.join(base, 'bmctl/lab');
}

export const stateFile = (dir: string): string => path.join(dir, 'state.json');
export const logFile = (dir: string): string => path.join(dir, 'lab.log');

export async function writeLabState(dir: string, state: LabState): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Written whole then renamed: a reader never sees half a state.
  const tmp = `${stateFile(dir)}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, stateFile(dir));
}

export async function readLabState(dir: string): Promise<LabState | null> {
  const text = await readFile(stateFile(dir), 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  return text === null ? null : (JSON.parse(text) as LabState);
}

export async function removeLabState(dir: string): Promise<void> {
  await rm(stateFile(dir), { force: true });
}

/** Whether `pid` is alive and still the lab process (a recycled PID is someone else's). */
export async function isLabProcess(pid: number): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.includes('controller/lab/lab-process.ts');
}
