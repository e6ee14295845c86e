/** The real bmctl, spawned as an operator would run it, against a real controller. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBmctl, startControllerProcess, type ControllerProcess } from '../../controller/lab/index.ts';

const PASSWORD = 'cli-Secret-77';
let ctl: ControllerProcess;
let env: Record<string, string>;
const outputs: string[] = [];

async function bm(...args: string[]) {
  const r = await runBmctl(args, env);
  outputs.push(r.stdout, r.stderr);
  return r;
}

beforeAll(async () => {
  ctl = await startControllerProcess();
  env = { BM_URL: ctl.url, BM_TOKEN: ctl.token, BM_PM_PASSWORD: PASSWORD };
});

afterAll(async () => {
  await ctl?.stop();
});

describe('bmctl against a real controller', () => {
  it('creates a node, then lists it in the seed-shaped table without any password column', async () => {
    const created = await bm(
      'node',
      'create',
      '--pm-address',
      '192.0.2.7',
      '--pm-user',
      'admin',
      '--cpus',
      '16',
      '--memory-mb',
      '65536',
      '--disk-gb',
      '480',
      '--arch',
      'x86_64',
      '--mac',
      '52:54:00:C1:00:01',
      '--name',
      'cli-node-1',
    );
    expect(created.code).toBe(0);
    const list = await bm('node', 'list');
    expect(list.code).toBe(0);
    const header = list.stdout.split('\n')[1]!;
    for (const col of ['UUID', 'Name', 'CPUs', 'Memory_MB', 'Disk_GB', 'MAC', 'PM_Address', 'PM_User', 'Provision_State'])
      expect(header).toContain(col);
    expect(header.toLowerCase()).not.toContain('password');
    expect(list.stdout).toMatch(/cli-node-1 \| 16 +\| 65536 +\| 480 +\| 52:54:00:c1:00:01 \| 192\.0\.2\.7:623 \| admin +\| enroll/);
  });

  it('prints JSON with --json on list and show, with pmPasswordSet only', async () => {
    const list = await bm('node', 'list', '--json');
    const nodes = JSON.parse(list.stdout) as { uuid: string; name: string; pmPasswordSet: boolean }[];
    expect(nodes.map((n) => n.name)).toContain('cli-node-1');
    expect(nodes[0]!.pmPasswordSet).toBe(true);
    const show = await bm('--json', 'node', 'show', 'cli-node-1');
    expect((JSON.parse(show.stdout) as { uuid: string }).uuid).toBe(nodes[0]!.uuid);
  });

  it('adds and lists ports, and updates and deletes nodes', async () => {
    expect((await bm('port', 'add', 'cli-node-1', '52:54:00:c1:00:02')).code).toBe(0);
    const ports = JSON.parse((await bm('port', 'list', '--node', 'cli-node-1', '--json')).stdout) as { mac: string }[];
    expect(ports.map((p) => p.mac).sort()).toEqual(['52:54:00:c1:00:01', '52:54:00:c1:00:02']);
    expect((await bm('port', 'delete', '52:54:00:c1:00:02')).code).toBe(0);
    const upd = await bm('--json', 'node', 'update', 'cli-node-1', '--cpus', '32');
    expect((JSON.parse(upd.stdout) as { cpus: number }).cpus).toBe(32);
    expect((await bm('node', 'delete', 'cli-node-1')).code).toBe(0);
    expect(JSON.parse((await bm('node', 'list', '--json')).stdout)).toEqual([]);
  });

  it('turns errors into one clear line and a non-zero exit', async () => {
    const dup1 = await bm(
      'node',
      'create',
      '--pm-address',
      'h1',
      '--pm-user',
      'u',
      '--cpus',
      '1',
      '--memory-mb',
      '1',
      '--disk-gb',
      '1',
      '--mac',
      '52:54:00:c1:00:09',
    );
    expect(dup1.code).toBe(0);
    const dup = await bm(
      'node',
      'create',
      '--pm-address',
      'h1',
      '--pm-user',
      'u',
      '--cpus',
      '1',
      '--memory-mb',
      '1',
      '--disk-gb',
      '1',
      '--mac',
      '52:54:00:c1:00:09',
    );
    expect(dup.code).toBe(1);
    expect(dup.stderr.trim().split('\n')).toHaveLength(1);
    expect(dup.stderr).toMatch(/^bmctl: error: MAC 52:54:00:c1:00:09 already belongs to node .*\(ALREADY_EXISTS\)/);
    const neg = await bm(
      'node',
      'create',
      '--pm-address',
      'h',
      '--pm-user',
      'u',
      '--cpus',
      '-2',
      '--memory-mb',
      '1',
      '--disk-gb',
      '1',
      '--mac',
      '52:54:00:c1:00:0a',
    );
    expect(neg.code).not.toBe(0);
    expect(neg.stderr).toMatch(/cpus/);
    const bad = await bm(
      'node',
      'create',
      '--pm-address',
      'h',
      '--pm-user',
      'u',
      '--cpus',
      '1',
      '--memory-mb',
      '1',
      '--disk-gb',
      '1',
      '--mac',
      'nope',
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toMatch(/^bmctl: error: mac: "nope" is not a MAC address.*\(INVALID_ARGUMENT\)$/);
    const missing = await bm('node', 'show', 'no-such-node');
    expect(missing.stderr.trim()).toBe('bmctl: error: node no-such-node not found (NOT_FOUND)');
  });

  it('says so when the token is wrong or the controller is unreachable', async () => {
    const wrong = await runBmctl(['node', 'list'], { BM_URL: ctl.url, BM_TOKEN: 'wrong' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/UNAUTHENTICATED/);
    const down = await runBmctl(['node', 'list'], { BM_URL: '127.0.0.1:1', BM_TOKEN: 'x' });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach the controller at 127\.0\.0\.1:1/);
  });

  it('prints live events with bmctl watch', async () => {
    const { spawn } = await import('node:child_process');
    const { bmctlPath } = await import('../../controller/lab/index.ts');
    const child = spawn(process.execPath, [bmctlPath, 'watch'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await new Promise((r) => setTimeout(r, 1500));
      await bm(
        'node',
        'create',
        '--pm-address',
        'h2',
        '--pm-user',
        'u',
        '--cpus',
        '1',
        '--memory-mb',
        '1',
        '--disk-gb',
        '1',
        '--mac',
        '52:54:00:c1:00:0b',
        '--name',
        'watched',
      );
      await expect.poll(() => out, { timeout: 5000 }).toMatch(/node\.created state=enroll power=unknown mac=52:54:00:c1:00:0b/);
    } finally {
      child.kill('SIGINT');
    }
    outputs.push(out);
  });

  it('never prints the password, and neither does the controller log', () => {
    expect(outputs.join('\n').length).toBeGreaterThan(500);
    expect(outputs.join('\n')).not.toContain(PASSWORD);
    expect(ctl.logs()).not.toContain(PASSWORD);
  });
});
