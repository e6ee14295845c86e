/**
 * The virtual BMC's acceptance test: the real ipmitool (-I lanplus) with
 * cipher suites 3 and 17 drives it, and the native driver agrees with it.
 */
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpmiDriver } from '../../controller/drivers/power/ipmi/driver.ts';
import { SessionPool } from '../../controller/drivers/power/ipmi/pool.ts';
import { requireBinary } from '../support/ipmi-sim.ts';
import { startVirtualBmc, type VirtualBmcServer, type PowerChange } from '../../controller/lab/index.ts';

let server: VirtualBmcServer;
const changes: PowerChange[] = [];
const PASSWORD = 'vbmc-secret';

function ipmitool(suite: number, args: readonly string[], password = PASSWORD): Promise<{ code: number; stdout: string; stderr: string }> {
  const argv = [
    '-I',
    'lanplus',
    '-H',
    server.address,
    '-p',
    String(server.port),
    '-U',
    'admin',
    '-E',
    '-C',
    String(suite),
    '-R',
    '1',
    '-N',
    '1',
    ...args,
  ];
  return new Promise((resolve) => {
    execFile(
      'ipmitool',
      argv,
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', IPMI_PASSWORD: password }, timeout: 15_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

async function ok(suite: number, args: readonly string[]): Promise<string> {
  const r = await ipmitool(suite, args);
  expect(r.stderr.replace(/.*IANA PEN.*\n?/g, '')).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
}

beforeAll(async () => {
  requireBinary('ipmitool', 'ipmitool');
  server = await startVirtualBmc({
    name: 'accept',
    users: [{ name: 'admin', password: PASSWORD, privilege: 4 }],
    onPowerChange: (c) => changes.push(c),
  });
});

afterAll(async () => {
  await server?.close();
});

describe.each([3, 17])('ipmitool -C %i against the virtual BMC', (suite) => {
  it('reads and changes power: status, on, off, cycle', async () => {
    server.bmc.setPower('off');
    changes.length = 0;
    expect(await ok(suite, ['power', 'status'])).toMatch(/Chassis Power is off/);
    expect(await ok(suite, ['power', 'on'])).toMatch(/Up\/On/);
    expect(server.bmc.power).toBe('on');
    expect(await ok(suite, ['power', 'status'])).toMatch(/Chassis Power is on/);
    expect(await ok(suite, ['power', 'cycle'])).toMatch(/Cycle/);
    expect(server.bmc.power).toBe('on');
    expect(await ok(suite, ['power', 'off'])).toMatch(/Down\/Off/);
    expect(await ok(suite, ['power', 'status'])).toMatch(/Chassis Power is off/);
    expect(changes.map((c) => `${c.cause}:${c.power}`)).toEqual(['on:on', 'cycle:off', 'cycle:on', 'off:off']);
  });

  it('sets the boot device to PXE, and the next power-on boots from it once', async () => {
    expect(await ok(suite, ['chassis', 'bootdev', 'pxe'])).toMatch(/Set Boot Device to pxe/);
    expect(server.bmc.bootFlags).toMatchObject({ device: 'pxe', valid: true, persistent: false });
    expect(await ok(suite, ['chassis', 'bootparam', 'get', '5'])).toMatch(/Force PXE/);
    changes.length = 0;
    await ok(suite, ['power', 'on']);
    await ok(suite, ['power', 'off']);
    await ok(suite, ['power', 'on']);
    expect(changes.filter((c) => c.power === 'on').map((c) => c.bootDevice)).toEqual(['pxe', 'default']);
    await ok(suite, ['power', 'off']);
  });

  it('answers mc info', async () => {
    const out = await ok(suite, ['mc', 'info']);
    expect(out).toMatch(/IPMI Version\s*:\s*2\.0/);
    expect(out).toMatch(/Firmware Revision\s*:\s*1\.02/);
  });

  it('refuses a wrong password', async () => {
    const opened = server.bmc.stats.sessionsOpened;
    const r = await ipmitool(suite, ['power', 'status'], 'wrong-password');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/RAKP 2 HMAC is invalid|Unable to establish/);
    expect(server.bmc.activeSessions).toBe(0);
    expect(server.bmc.stats.sessionsOpened).toBe(opened);
  });
});

describe('native driver against the virtual BMC', () => {
  it('prefers suite 17 and agrees with ipmitool', async () => {
    const pool = new SessionPool({ attemptTimeoutMs: 500 });
    const suite17 = server.bmc.stats.suites[17] ?? 0;
    try {
      const d = new IpmiDriver(
        { nodeUuid: 'n1', driver: 'ipmi', address: server.address, port: server.port, username: 'admin', password: PASSWORD },
        { pool },
      );
      await d.setPowerState('on');
      expect(server.bmc.stats.suites[17]).toBe(suite17 + 1);
      expect(await ok(3, ['power', 'status'])).toMatch(/Chassis Power is on/);
      await d.setBootDevice('pxe', { persistent: true, uefi: true });
      expect(await d.getBootDevice()).toEqual({ device: 'pxe', persistent: true, uefi: true });
      const param = await ok(17, ['chassis', 'bootparam', 'get', '5']);
      expect(param).toMatch(/Options apply to all future boots/);
      expect(param).toMatch(/BIOS EFI boot/);
      await d.setPowerState('soft-off');
      expect(await d.getPowerState()).toBe('off');
      expect((await d.validate()).ipmiVersion).toBe('2.0');
      expect(pool.stats().sessionsOpened).toBe(1);
    } finally {
      await pool.close();
    }
    expect(server.bmc.activeSessions).toBe(0);
  });
});
