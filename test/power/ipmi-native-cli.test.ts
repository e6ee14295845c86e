/**
 * bmctl against a real controller whose nodes use the default power driver
 * (the native "ipmi"), each node behind its own virtual BMC: manage verifies
 * the credentials, power and bootdev reach the BMC, a wrong password ends in
 * verify-failed without the password anywhere.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import {
  runBmctl,
  startControllerProcess,
  type ControllerProcess,
  startVirtualBmc,
  type VirtualBmcServer,
  type PowerChange,
} from '../../controller/lab/index.ts';

const PASSWORD = 'native-cli-pw-7';
let bmc: VirtualBmcServer;
let ctl: ControllerProcess;
let conn: RpcConnection;
const changes: PowerChange[] = [];

beforeAll(async () => {
  bmc = await startVirtualBmc({
    name: 'cli-bmc',
    users: [{ name: 'admin', password: PASSWORD, privilege: 4 }],
    power: 'off',
    onPowerChange: (c) => changes.push(c),
  });
  ctl = await startControllerProcess({ extraToml: '[power]\ncall_timeout_s = 3\nsettle_timeout_s = 10' });
  conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
}, 60_000);

afterAll(async () => {
  conn?.close();
  await ctl?.stop();
  await bmc?.close();
});

describe('bmctl with the native IPMI driver', () => {
  it('manages, powers and sets the boot device of a node through its virtual BMC', async () => {
    const nodes = conn.client(NodeService);
    const node = await nodes.createNode({
      name: 'native-1',
      pmAddress: bmc.address,
      pmPort: bmc.port,
      pmUser: 'admin',
      pmPassword: PASSWORD,
      cpus: 4,
      memoryMb: 8192,
      localGb: 100,
      cpuArch: 'x86_64',
      mac: '52:54:00:a2:00:01',
    });
    expect(node.powerDriver).toBe('ipmi');
    const env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };

    const manage = await runBmctl(['node', 'manage', 'native-1', '--wait'], env);
    expect(manage.stdout).toMatch(/provision_state=manageable/);

    const boot = await runBmctl(['node', 'bootdev', 'native-1', 'pxe', '--persistent', '--uefi'], env);
    expect(boot.code).toBe(0);
    expect(bmc.bmc.bootFlags).toMatchObject({ device: 'pxe', persistent: true, uefi: true, valid: true });

    const on = await runBmctl(['node', 'power', 'on', 'native-1'], env);
    expect(on.stdout).toMatch(/power=on/);
    expect(bmc.bmc.power).toBe('on');
    expect(changes.at(-1)).toMatchObject({ power: 'on', bootDevice: 'pxe', cause: 'on' });

    const cycled = await runBmctl(['node', 'power', 'cycle', 'native-1'], env);
    expect(cycled.code).toBe(0);
    expect(changes.map((c) => c.cause)).toContain('cycle');
    expect(bmc.bmc.power).toBe('on');

    const off = await runBmctl(['node', 'power', 'off', 'native-1'], env);
    expect(off.stdout).toMatch(/power=off/);
    const status = await runBmctl(['node', 'power', 'status', 'native-1'], env);
    expect(status.stdout.trim()).toBe('Chassis Power is off');
    expect((await nodes.getNode({ id: node.uuid })).powerState).toBe('off');
  });

  it('ends in verify-failed naming the BMC when the password is wrong, and never shows it', async () => {
    const nodes = conn.client(NodeService);
    const wrong = 'definitely-wrong-9';
    const node = await nodes.createNode({
      pmAddress: bmc.address,
      pmPort: bmc.port,
      pmUser: 'admin',
      pmPassword: wrong,
      cpus: 1,
      memoryMb: 1024,
      localGb: 10,
      cpuArch: 'x86_64',
      mac: '52:54:00:a2:00:02',
    });
    const env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
    const failed = await runBmctl(['node', 'manage', node.uuid, '--wait'], env);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(new RegExp(`provision_state=verify-failed .*${bmc.address.replace(/\./g, '\\.')}:${bmc.port}`));
    expect(failed.stdout + failed.stderr).not.toContain(wrong);
    // The client sees the wrong password in RAKP 2 (the BMC's HMAC does not verify) and stops there.
    expect(failed.stdout).toMatch(/refused the credentials/);
    expect(ctl.logs()).not.toContain(wrong);
    expect(ctl.logs()).not.toContain(PASSWORD);
  });
});
