/**
 * The README's main job, as a user runs it: `bmctl lab up` starts a lab in
 * the background, enrolls, cleans and deploys its machines through the API
 * and returns; `bmctl instance list` in a fresh environment (only the saved
 * defaults) lists the ACTIVE instances; `bmctl lab down` leaves no process,
 * database or saved defaults behind.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { afterAll, describe, expect, it } from 'vitest';
import { bmctlPath, repoRoot } from '../../controller/lab/index.ts';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

let home: string;
const server = (process.env.BM_TEST_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/').replace(/\/[^/]*$/, '/');

/** bmctl with nothing of this shell's API settings: only HOME and the XDG dirs of the test's own home. */
function bmctl(args: readonly string[], timeoutMs: number): Promise<Run> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, 'config'),
    XDG_STATE_HOME: path.join(home, 'state'),
  };
  if (process.env.BM_NATS_URL) env.BM_NATS_URL = process.env.BM_NATS_URL;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bmctlPath, ...args], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const stateDir = (): string => path.join(home, 'state/bmctl/lab');
const envFile = (): string => path.join(home, 'config/bmctl/env.json');

function alive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

afterAll(async () => {
  // A failed assertion must not leave a lab running.
  if (home && existsSync(path.join(stateDir(), 'state.json'))) await bmctl(['lab', 'down'], 90_000);
  if (home) await rm(home, { recursive: true, force: true });
});

describe('bmctl lab', () => {
  it('comes up with ACTIVE instances, leaves bmctl pointed at it, and goes down without a trace', async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'bm-labhome-'));
    const up = await bmctl(['lab', 'up', '--nodes', '2', '--database', server], 240_000);
    const out = up.stdout + up.stderr;
    expect(up.code, out).toBe(0);
    expect(out).toMatch(/lab-vm-001 ACTIVE 100%/);
    expect(out).toMatch(/lab-vm-002 BUILD \d+% \(node (deploying|wait-callback)\)/);
    expect(out).toMatch(/2 instance\(s\) ACTIVE in/);
    expect(out).toMatch(/every disk holds the image bytes/);
    const exported = /^export BM_URL=(\S+) BM_TOKEN=(\S+) BM_CA=(\S+)$/m.exec(up.stdout);
    expect(exported, out).not.toBeNull();
    const state = JSON.parse(await readFile(path.join(stateDir(), 'state.json'), 'utf8')) as {
      pid: number;
      controllerPid: number;
      databaseUrl: string;
      machines: { bmcPassword: string }[];
    };
    // The BMC passwords stay in the 0600 state file, out of everything printed.
    for (const m of state.machines) expect(out).not.toContain(m.bmcPassword);
    expect(JSON.parse(await readFile(envFile(), 'utf8'))).toEqual({ url: exported![1], token: exported![2], ca: exported![3] });
    // The lab's API speaks TLS only: plaintext bmctl is told to pass --ca.
    const plain = await bmctl(['node', 'list', '--url', exported![1]!, '--token', exported![2]!], 30_000);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/speaks TLS: pass --ca/);
    expect((await import('node:fs')).statSync(envFile()).mode & 0o777).toBe(0o600);

    // A new shell: no BM_URL, no BM_TOKEN, no flags; only the saved defaults.
    const list = await bmctl(['instance', 'list', '--json'], 30_000);
    expect(list.code, list.stderr).toBe(0);
    const instances = JSON.parse(list.stdout) as { name: string; state: string }[];
    expect(instances.map((i) => [i.name, i.state]).sort()).toEqual([
      ['lab-vm-001', 'ACTIVE'],
      ['lab-vm-002', 'ACTIVE'],
    ]);
    // A second lab is refused while this one runs.
    const again = await bmctl(['lab', 'up', '--nodes', '1'], 30_000);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/a lab is already up/);

    const down = await bmctl(['lab', 'down'], 90_000);
    expect(down.code, down.stdout + down.stderr).toBe(0);
    expect(down.stdout).toMatch(/lab down: stopped the lab/);
    expect(alive(state.pid)).toBe(false);
    expect(existsSync(envFile())).toBe(false);
    expect(existsSync(path.join(stateDir(), 'state.json'))).toBe(false);
    const conn = await mysql.createConnection({ uri: server });
    try {
      const [dbs] = await conn.query<mysql.RowDataPacket[]>('SHOW DATABASES LIKE ?', [new URL(state.databaseUrl).pathname.slice(1)]);
      expect(dbs).toHaveLength(0);
    } finally {
      await conn.end();
    }
    // Without a lab, bmctl is back to its default address.
    const after = await bmctl(['instance', 'list'], 30_000);
    expect(after.code).toBe(1);
    // (UNAUTHENTICATED when another controller happens to serve there.)
    expect(after.stderr).toMatch(/cannot reach the controller at 127\.0\.0\.1:6385|UNAUTHENTICATED/);
  }, 300_000);
});
