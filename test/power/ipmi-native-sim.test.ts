/**
 * The native RMCP+ driver against OpenIPMI's ipmi_sim, a BMC nobody here wrote.
 */
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpmiDriver } from '../../controller/drivers/power/ipmi/driver.ts';
import { SessionPool } from '../../controller/drivers/power/ipmi/pool.ts';
import { BmcAuthError, BmcTimeoutError } from '../../controller/drivers/power/errors.ts';
import { startIpmiSim, type IpmiSim } from '../support/ipmi-sim.ts';

let sim: IpmiSim;
let pool: SessionPool;

function driver(password = sim.password, options: { timeoutMs?: number; pool?: SessionPool } = {}): IpmiDriver {
  return new IpmiDriver(
    { nodeUuid: 'node-sim', driver: 'ipmi', address: sim.address, port: sim.port, username: sim.user, password },
    { pool: options.pool ?? pool, timeoutMs: options.timeoutMs ?? 8000 },
  );
}

beforeAll(async () => {
  sim = await startIpmiSim('sim-secret');
  pool = new SessionPool({ attemptTimeoutMs: 500, retries: 2 });
});

afterAll(async () => {
  await pool?.close();
  await sim?.stop();
});

describe('native IPMI driver against ipmi_sim', () => {
  it('reads the device ID', async () => {
    const id = await driver().getDeviceId();
    expect(id.manufacturerId).toBe(0x1291);
    expect(id.productId).toBe(0x0f02);
    expect(id.ipmiVersion).toBe('2.0');
  });

  it('powers on, off and cycles, and reads the state back', async () => {
    const d = driver();
    await d.setPowerState('on');
    expect(await sim.chassisPower()).toBe('1');
    expect(await d.getPowerState()).toBe('on');
    await d.setPowerState('off');
    expect(await sim.chassisPower()).toBe('0');
    expect(await d.getPowerState()).toBe('off');
    await d.setPowerState('reboot');
    expect(await d.getPowerState()).toBe('on');
    await sim.setChassisPower(false);
    expect(await d.getPowerState()).toBe('off');
  });

  it('sets the boot device to PXE and reads it back', async () => {
    const d = driver();
    await d.setBootDevice('pxe', { persistent: false, uefi: false });
    expect((await d.getBootDevice()).device).toBe('pxe');
    await d.setBootDevice('disk', { persistent: false, uefi: false });
    // ipmi_sim's chassis program keeps "default" for a disk boot (../shared/PEERS.md).
    expect(['disk', 'default']).toContain((await d.getBootDevice()).device);
  });

  it('reuses one session for many calls', async () => {
    const before = pool.stats().sessionsOpened;
    for (let i = 0; i < 20; i++) await driver().getPowerState();
    expect(pool.stats().sessionsOpened).toBe(before);
  });

  it('fails with an auth error on a wrong password, without leaking it', async () => {
    const err = await driver('not-the-password')
      .getPowerState()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BmcAuthError);
    expect((err as Error).message).toContain(`${sim.address}:${sim.port}`);
    expect((err as Error).message).toContain('node-sim');
    expect((err as Error).message).not.toContain('not-the-password');
  });

  it('fails with a timeout error in bounded time on a closed port', async () => {
    const probe = dgram.createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
    const port = probe.address().port;
    await new Promise<void>((r) => probe.close(() => r()));
    const own = new SessionPool({ attemptTimeoutMs: 300, retries: 2 });
    try {
      const d = new IpmiDriver(
        { nodeUuid: 'node-dead', driver: 'ipmi', address: '127.0.0.1', port, username: 'admin', password: 'x' },
        { pool: own, timeoutMs: 5000 },
      );
      const started = performance.now();
      const err = await d.getPowerState().catch((e: unknown) => e);
      const took = performance.now() - started;
      expect(err).toBeInstanceOf(BmcTimeoutError);
      expect((err as Error).message).toContain(`127.0.0.1:${port}`);
      expect(took).toBeLessThan(2000);
    } finally {
      await own.close();
    }
  });
});
