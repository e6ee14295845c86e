/**
 * The README's main job, as a user runs it: the lab with --once enrolls,
 * verifies and deploys its virtual machines and exits 0, leaving nothing
 * behind (its database is dropped, its processes are gone).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { describe, expect, it } from 'vitest';
import { repoRoot, uniqueDatabaseUrl } from '../../controller/lab/index.ts';

function runLab(args: readonly string[], env: Readonly<Record<string, string>>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(repoRoot, 'controller/lab/lab.ts'), ...args], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('the virtual lab', () => {
  it('enrolls, cleans and boots an instance on each machine through bmctl, then stops cleanly with --once', async () => {
    const url = uniqueDatabaseUrl('bm_labtest');
    const { code, out } = await runLab(['--once', '--nodes', '2'], { BM_LAB_DATABASE_URL: url });
    expect(code, out).toBe(0);
    expect(out).toMatch(/lab-node-001: network boot: clean ramdisk running/);
    expect(out).toMatch(/lab-node-002: network boot: deploy ramdisk running/);
    expect(out).toMatch(/lab-vm-001 ACTIVE/);
    expect(out).toMatch(/2 instance\(s\) ACTIVE in/);
    expect(out).toMatch(/every disk holds the image bytes/);
    const rows = out.split('\n').filter((l) => /^\| [0-9a-f-]{36} \| lab-node-/.test(l));
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row).toMatch(/\| active\s+\| on\s+\|/);
    // No BMC password in anything the lab printed.
    expect(out).not.toMatch(/lab-000\d-secret/);
    const conn = await mysql.createConnection({ uri: url.replace(/\/[^/]*$/, '/') });
    try {
      const [dbs] = await conn.query<mysql.RowDataPacket[]>('SHOW DATABASES LIKE ?', [new URL(url).pathname.slice(1)]);
      expect(dbs).toHaveLength(0);
    } finally {
      await conn.end();
    }
  }, 180_000);
});
