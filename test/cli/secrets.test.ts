/**
 * bmctl takes a BMC password from the environment, from stdin or from a
 * prompt on a terminal, so it never has to be in argv: while `node update`
 * runs, no /proc/<pid>/cmdline holds it, and the controller stores exactly it.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import { parseDatabaseUrl } from '../../db/connect.ts';
import { loadSecretKey } from '../../controller/secrets/key-file.ts';
import { SecretBox } from '../../controller/secrets/secret-box.ts';
import { bmctlPath, repoRoot, runBmctl, startControllerProcess, type ControllerProcess } from '../../controller/lab/index.ts';

let ctl: ControllerProcess;
let db: mysql.Connection;
let box: SecretBox;
let env: Record<string, string>;
let macCounter = 0;

function nextMac(): string {
  macCounter++;
  return `52:54:00:40:00:${macCounter.toString(16).padStart(2, '0')}`;
}

function createArgs(name: string): string[] {
  return [
    'node',
    'create',
    '--name',
    name,
    '--pm-address',
    '192.0.2.40',
    '--pm-user',
    'admin',
    '--cpus',
    '1',
    '--memory-mb',
    '1024',
    '--disk-gb',
    '10',
    '--mac',
    nextMac(),
  ];
}

/** What the controller stored for the node, decrypted with its own key. */
async function storedPassword(name: string): Promise<string> {
  const [rows] = await db.query<mysql.RowDataPacket[]>('SELECT uuid, pm_password_enc FROM nodes WHERE name = ?', [name]);
  return box.decrypt(rows[0]!.pm_password_enc as Buffer, rows[0]!.uuid as string);
}

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** bmctl with `input` on its stdin (a pipe, not a terminal). */
function bmctlWithStdin(args: readonly string[], input: string, extraEnv: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bmctlPath, ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...env, ...extraEnv },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

/** Every process's argv that holds `needle`, read from /proc while it runs. */
async function cmdlinesHolding(needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(path.join('/proc', entry, 'cmdline')).catch(() => null);
    if (cmdline?.includes(needle)) found.push(`${entry}: ${cmdline.toString().replaceAll('\0', ' ')}`);
  }
  return found;
}

beforeAll(async () => {
  ctl = await startControllerProcess({ logLevel: 'warn' });
  env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
  const p = parseDatabaseUrl(ctl.databaseUrl);
  db = await mysql.createConnection({ host: p.host, port: p.port, user: p.user, password: p.password, database: p.database });
  box = new SecretBox((await loadSecretKey({ key: '', keyFile: path.join(ctl.dir, 'secret.key') })).key);
});

afterAll(async () => {
  await db?.end();
  await ctl?.stop();
});

/**
 * Each case runs bmctl once or twice, and each run starts Node on the TypeScript sources: 11-14 s a case
 * on a loaded CI host, and one case that runs it twice took over the default 30 s there.
 */
describe('bmctl and BMC passwords', { timeout: 120_000 }, () => {
  it('node update takes the password from BM_PM_PASSWORD, and no process argv ever holds it', async () => {
    expect((await runBmctl(createArgs('sec-env'), { ...env, BM_PM_PASSWORD: 'Old-Pw-1' })).code).toBe(0);
    const secret = 'New-Env-Pw-7q';
    const child = spawn(process.execPath, [bmctlPath, 'node', 'update', 'sec-env'], {
      cwd: repoRoot,
      env: { ...process.env, ...env, BM_PM_PASSWORD: secret },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    let alive = true;
    void exited.then(() => (alive = false));
    const seen: string[] = [];
    let ownArgvReads = 0;
    while (alive) {
      // The bmctl process's own argv, read while it runs, proves the scan overlapped it.
      const own = await readFile(`/proc/${child.pid}/cmdline`).catch(() => null);
      if (own?.includes('update')) ownArgvReads++;
      seen.push(...(await cmdlinesHolding(secret)));
    }
    expect(await exited).toBe(0);
    expect(ownArgvReads).toBeGreaterThan(0);
    expect(seen).toEqual([]);
    expect(stderr).toContain('changing the BMC password to the value of BM_PM_PASSWORD');
    expect(stderr).not.toContain(secret);
    expect(await storedPassword('sec-env')).toBe(secret);
  });

  it('reads the password from stdin with --pm-password-stdin, for create and update', async () => {
    const created = await bmctlWithStdin([...createArgs('sec-stdin'), '--pm-password-stdin'], 'Stdin-Pw-1\n');
    expect(created.code).toBe(0);
    expect(await storedPassword('sec-stdin')).toBe('Stdin-Pw-1');
    const updated = await bmctlWithStdin(['node', 'update', 'sec-stdin', '--pm-password-stdin'], 'Stdin-Pw-2\r\n');
    expect(updated.code).toBe(0);
    expect(await storedPassword('sec-stdin')).toBe('Stdin-Pw-2');
    expect(created.stdout + created.stderr + updated.stdout + updated.stderr).not.toMatch(/Stdin-Pw/);
  });

  it('asks on a terminal without echoing what is typed', async () => {
    expect((await runBmctl(createArgs('sec-tty'), { ...env, BM_PM_PASSWORD: 'Old-Pw-2' })).code).toBe(0);
    // python's pty gives bmctl a real terminal as stdin and stdout; it types the password when asked.
    const script = [
      'import os, pty, sys, time',
      'pid, fd = pty.fork()',
      'if pid == 0:',
      '    os.execvp(sys.argv[1], sys.argv[1:])',
      'out = b""',
      'deadline = time.time() + 30',
      'typed = False',
      'while time.time() < deadline:',
      '    try:',
      '        chunk = os.read(fd, 4096)',
      '    except OSError:',
      '        break',
      '    if not chunk:',
      '        break',
      '    out += chunk',
      '    if not typed and b"BMC password: " in out:',
      '        time.sleep(0.2)',
      '        os.write(fd, b"Tty-Pw-9x\\r")',
      '        typed = True',
      '_, status = os.waitpid(pid, 0)',
      'sys.stdout.write(out.decode(errors="replace"))',
      'sys.exit(os.waitstatus_to_exitcode(status))',
    ].join('\n');
    const result = await new Promise<Run>((resolve) => {
      const child = spawn('python3', ['-c', script, process.execPath, bmctlPath, 'node', 'update', 'sec-tty', '--pm-password-stdin'], {
        cwd: repoRoot,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('exit', (code) => resolve({ code, stdout, stderr }));
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('BMC password: ');
    expect(result.stdout).not.toContain('Tty-Pw-9x');
    expect(await storedPassword('sec-tty')).toBe('Tty-Pw-9x');
  });

  it('says how to give a password when none is given and nothing can ask, and refuses two ways at once', async () => {
    const none = await bmctlWithStdin(createArgs('sec-none'), '', { BM_PM_PASSWORD: '' });
    expect(none.code).toBe(1);
    expect(none.stderr.trim()).toBe(
      'bmctl: error: a BMC password is required: set BM_PM_PASSWORD, pipe it to --pm-password-stdin, or run on a terminal to be asked',
    );
    const both = await bmctlWithStdin([...createArgs('sec-both'), '--pm-password-stdin', '--pm-password', 'x'], 'y\n');
    expect(both.code).toBe(1);
    expect(both.stderr).toContain('give the BMC password one way');
    const empty = await bmctlWithStdin([...createArgs('sec-empty'), '--pm-password-stdin'], '');
    expect(empty.stderr.trim()).toBe('bmctl: error: --pm-password-stdin: stdin was empty');
  });

  it('still takes --pm-password, with a warning that it shows in ps', async () => {
    const r = await runBmctl([...createArgs('sec-argv'), '--pm-password', 'Argv-Pw-3'], env);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^bmctl: warning: --pm-password shows the password in the process list/);
    expect(r.stderr).not.toContain('Argv-Pw-3');
    expect(await storedPassword('sec-argv')).toBe('Argv-Pw-3');
  });
});
