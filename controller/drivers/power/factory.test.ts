import { describe, expect, it } from 'vitest';
import { BmError } from '../../errors.ts';
import { powerFactory } from './factory.ts';
import { FakeBmcWorld, FakePowerDriver } from './fake/driver.ts';

const target = { nodeUuid: '01a22c80-0000-7000-8000-000000000001', address: 'bmc-1', port: 623, username: 'u', password: 'p' };

describe('powerFactory', () => {
  it('refuses a node naming a driver this controller lacks, listing the ones it has', () => {
    const make = powerFactory({ fake: (t) => new FakePowerDriver(t, new FakeBmcWorld()) });
    expect(() => make({ ...target, driver: 'redfish' })).toThrow(BmError);
    expect(() => make({ ...target, driver: 'redfish' })).toThrow(
      /names power driver "redfish", which this controller does not have \(it has: fake\)/,
    );
  });

  it('hands out the fake driver, whose machines keep power and a one-time boot device', async () => {
    const world = new FakeBmcWorld();
    const changes: string[] = [];
    world.onPowerChange((c) => changes.push(`${c.power}:${c.bootDevice.device}`));
    const driver = powerFactory({ fake: (t) => new FakePowerDriver(t, world) })({ ...target, driver: 'fake' });
    expect(await driver.getPowerState()).toBe('off');
    await driver.setBootDevice('pxe', { persistent: false, uefi: true });
    await driver.setPowerState('on');
    // The one-time device was used by that boot; the next boot is from disk.
    expect(await driver.getBootDevice()).toMatchObject({ device: 'disk', persistent: true });
    await driver.setPowerState('reboot');
    expect(changes).toEqual(['on:pxe', 'on:disk']);
    world.machine('bmc-1').failure = 'auth';
    await expect(driver.getPowerState()).rejects.toThrow(/refused the credentials/);
  });
});
