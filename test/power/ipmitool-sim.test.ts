/**
 * Power through the API with the ipmitool driver against a real BMC
 * simulator (OpenIPMI's ipmi_sim) and the real ipmitool.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { IpmitoolDriver } from '../../controller/drivers/power/ipmitool/driver.ts';
import { BmcAuthError, BmcTimeoutError } from '../../controller/drivers/power/errors.ts';
import { runBmctl, startControllerProcess, type ControllerProcess } from '../../controller/lab/index.ts';
import { requireBinary, startIpmiSim, type IpmiSim } from '../support/ipmi-sim.ts';

let sim: IpmiSim;
let ctl: ControllerProcess;
let conn: RpcConnection;

beforeAll(async () => {
  requireBinary('ipmitool', 'ipmitool');
  sim = await startIpmiSim('s3cret-bmc');
  ctl = await startControllerProcess();
  conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
});

afterAll(async () => {
  conn?.close();
  await ctl?.stop();
  await sim?.stop();
});

describe('ipmitool driver against ipmi_sim', () => {
  const target = () => ({
    nodeUuid: 'n-1',
    driver: 'ipmitool',
    address: sim.address,
    port: sim.port,
    username: sim.user,
    password: sim.password,
  });

  it('reads and changes power, and sets the boot device', async () => {
    const d = new IpmitoolDriver(target());
    await d.setPowerState('off');
    expect(await d.getPowerState()).toBe('off');
    await d.setPowerState('on');
    expect(await d.getPowerState()).toBe('on');
    expect(await sim.chassisPower()).toBe('1');
    await d.setBootDevice('pxe', { persistent: false, uefi: false });
    expect((await d.getBootDevice()).device).toBe('pxe');
  });

  it('says "refused the credentials" for a wrong password, at once', async () => {
    const started = Date.now();
    const err = await new IpmitoolDriver({ ...target(), password: 'wrong' }).getPowerState().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BmcAuthError);
    expect(String(err)).toMatch(/refused the credentials/);
    expect(String(err)).not.toContain('wrong');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('says "did not answer" for a closed port, within a bounded time', async () => {
    const started = Date.now();
    const err = await new IpmitoolDriver({ ...target(), port: 9 }).getPowerState().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BmcTimeoutError);
    expect(String(err)).toMatch(/127\.0\.0\.1:9 of node n-1 did not answer/);
    expect(Date.now() - started).toBeLessThan(8000);
  });
});

describe('power and manage through the API and bmctl', () => {
  it('manages a node (enroll -> verifying -> manageable) and powers it', async () => {
    const nodes = conn.client(NodeService);
    const node = await nodes.createNode({
      name: 'sim-node',
      pmAddress: sim.address,
      pmPort: sim.port,
      pmUser: sim.user,
      pmPassword: sim.password,
      powerDriver: 'ipmitool',
      cpus: 2,
      memoryMb: 2048,
      localGb: 20,
      cpuArch: 'x86_64',
      mac: '52:54:00:a1:00:01',
    });
    const env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
    const manage = await runBmctl(['node', 'manage', 'sim-node', '--wait'], env);
    expect(manage.stderr).toBe('');
    expect(manage.stdout).toMatch(/provision_state=manageable/);
    const off = await runBmctl(['node', 'power', 'off', 'sim-node'], env);
    expect(off.stdout).toMatch(/power=off/);
    expect(await sim.chassisPower()).toBe('0');
    const on = await runBmctl(['--json', 'node', 'power', 'on', 'sim-node'], env);
    expect((JSON.parse(on.stdout) as { powerState: string }).powerState).toBe('on');
    const st = await runBmctl(['node', 'power', 'status', 'sim-node'], env);
    expect(st.stdout.trim()).toBe('Chassis Power is on');
    const boot = await runBmctl(['node', 'bootdev', 'sim-node', 'pxe'], env);
    expect(boot.stdout).toMatch(/boot device: pxe/);
    expect((await nodes.getNode({ id: node.uuid })).powerState).toBe('on');
  });

  it('ends in verify-failed with the reason when the password is wrong, and comes back after a fix', async () => {
    const nodes = conn.client(NodeService);
    const node = await nodes.createNode({
      pmAddress: sim.address,
      pmPort: sim.port,
      pmUser: sim.user,
      pmPassword: 'not-it',
      powerDriver: 'ipmitool',
      cpus: 2,
      memoryMb: 2048,
      localGb: 20,
      cpuArch: 'x86_64',
      mac: '52:54:00:a1:00:02',
    });
    const env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
    const failed = await runBmctl(['node', 'manage', node.uuid, '--wait'], env);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(
      /provision_state=verify-failed power=unknown last_error="verification failed: BMC 127\.0\.0\.1:\d+ of node .* refused the credentials/,
    );
    expect(failed.stdout).not.toContain('not-it');
    await nodes.updateNode({ id: node.uuid, pmPassword: sim.password });
    const fixed = await runBmctl(['node', 'manage', node.uuid, '--wait'], env);
    expect(fixed.stdout).toMatch(/provision_state=manageable/);
    expect((await nodes.getNode({ id: node.uuid })).lastError).toBe('');
  });

  it("refuses bad verbs and targets, and a verb the node's state does not allow, naming the state", async () => {
    const nodes = conn.client(NodeService);
    await expect(nodes.setPowerState({ id: 'sim-node', target: 'explode' })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^target: /),
    });
    await expect(nodes.provision({ id: 'sim-node', verb: 'deploy' })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    const other = await nodes.createNode({
      pmAddress: sim.address,
      pmPort: sim.port,
      pmUser: 'u',
      pmPassword: 'p',
      powerDriver: 'fake',
      cpus: 1,
      memoryMb: 1,
      localGb: 1,
      cpuArch: 'x86_64',
      mac: '52:54:00:a1:00:03',
    });
    await expect(nodes.provision({ id: other.uuid, verb: 'provide' })).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      details: expect.stringMatching(/is enroll: cannot provide \(possible: manage\)/),
    });
    expect((await nodes.getNode({ id: other.uuid })).provisionState).toBe('enroll');
    // The fake driver is registered like the real ones: its node answers without a BMC.
    expect(await nodes.getPowerState({ id: other.uuid })).toMatchObject({ powerState: 'off' });
  });

  it('never logs the BMC password', () => {
    expect(ctl.logs()).not.toContain(sim.password);
  });
});
