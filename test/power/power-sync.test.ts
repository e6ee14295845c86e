/**
 * The power-state sync loop in a real controller process, against real BMC
 * simulators (ipmi_sim) through the real ipmitool, with one BMC unreachable.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mysql from 'mysql2/promise';
import { parseDatabaseUrl } from '../../db/connect.ts';
import { SecretBox } from '../../controller/secrets/secret-box.ts';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { startControllerProcess, type ControllerProcess } from '../../controller/lab/index.ts';
import { requireBinary, startIpmiSim, type IpmiSim } from '../support/ipmi-sim.ts';

let sims: IpmiSim[] = [];
let ctl: ControllerProcess;
let conn: RpcConnection;

beforeAll(async () => {
  requireBinary('ipmitool', 'ipmitool');
  sims = await Promise.all([startIpmiSim('pw-a'), startIpmiSim('pw-b'), startIpmiSim('pw-c')]);
  ctl = await startControllerProcess({ extraToml: '[power]\nsync_interval_s = 1\nsync_failure_threshold = 2\ncall_timeout_s = 5' });
  conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
});

afterAll(async () => {
  conn?.close();
  await ctl?.stop();
  await Promise.all(sims.map((s) => s.stop()));
});

describe('power sync against ipmi_sim', () => {
  it('converges on what the BMCs say, and flags the unreachable one', async () => {
    const nodes = conn.client(NodeService);
    const ids: string[] = [];
    for (const [i, sim] of sims.entries()) {
      await sim.setChassisPower(i % 2 === 0);
      const n = await nodes.createNode({
        pmAddress: sim.address,
        pmPort: sim.port,
        pmUser: sim.user,
        pmPassword: sim.password,
        powerDriver: 'ipmitool',
        cpus: 1,
        memoryMb: 1,
        localGb: 1,
        cpuArch: 'x86_64',
        mac: `52:54:00:b0:00:0${i}`,
      });
      ids.push(n.uuid);
    }
    const dead = await nodes.createNode({
      pmAddress: '127.0.0.1',
      pmPort: 9,
      pmUser: 'admin',
      pmPassword: 'x',
      powerDriver: 'ipmitool',
      cpus: 1,
      memoryMb: 1,
      localGb: 1,
      cpuArch: 'x86_64',
      mac: '52:54:00:b0:00:09',
    });
    // Enrolled nodes are not polled until their credentials are verified.
    await new Promise((r) => setTimeout(r, 2500));
    expect((await nodes.getNode({ id: ids[0]! })).powerState).toBe('unknown');
    for (const id of [...ids, dead.uuid]) await nodes.provision({ id, verb: 'manage' });
    await expect
      .poll(async () => Promise.all(ids.map(async (id) => (await nodes.getNode({ id })).provisionState)), {
        timeout: 20_000,
        interval: 500,
      })
      .toEqual(['manageable', 'manageable', 'manageable']);
    const power = async () => Promise.all(ids.map(async (id) => (await nodes.getNode({ id })).powerState));
    await expect.poll(power, { timeout: 20_000, interval: 500 }).toEqual(['on', 'off', 'on']);

    // Someone switches node 0 off at the machine: the next sweep records it.
    await sims[0]!.setChassisPower(false);
    await expect.poll(async () => (await nodes.getNode({ id: ids[0]! })).powerState, { timeout: 20_000, interval: 500 }).toBe('off');

    await expect
      .poll(async () => (await nodes.getNode({ id: dead.uuid })).powerSyncFailures, { timeout: 30_000, interval: 500 })
      .toBeGreaterThanOrEqual(2);
    const flagged = await nodes.getNode({ id: dead.uuid });
    expect(flagged.lastError).toMatch(/^power sync failing: BMC 127\.0\.0\.1:9 .*did not answer/);
    expect(flagged.powerState).toBe('unknown');
  });

  it('skips a node whose BMC password cannot be decrypted, with last_error, and keeps polling the others', async () => {
    const nodes = conn.client(NodeService);
    await sims[1]!.setChassisPower(false);
    const make = (sim: IpmiSim, mac: string) =>
      nodes.createNode({
        pmAddress: sim.address,
        pmPort: sim.port,
        pmUser: sim.user,
        pmPassword: sim.password,
        powerDriver: 'ipmitool',
        cpus: 1,
        memoryMb: 1,
        localGb: 1,
        cpuArch: 'x86_64',
        mac,
      });
    const good = await make(sims[1]!, '52:54:00:b0:01:01');
    const sealed = await make(sims[2]!, '52:54:00:b0:01:02');
    for (const n of [good, sealed]) await nodes.provision({ id: n.uuid, verb: 'manage' });
    await expect
      .poll(async () => Promise.all([good, sealed].map(async (n) => (await nodes.getNode({ id: n.uuid })).provisionState)), {
        timeout: 20_000,
        interval: 500,
      })
      .toEqual(['manageable', 'manageable']);
    await expect.poll(async () => (await nodes.getNode({ id: good.uuid })).powerState, { timeout: 20_000, interval: 500 }).toBe('off');

    // The row now holds a password sealed with another cluster's key, as after a restore from elsewhere.
    const p = parseDatabaseUrl(ctl.databaseUrl);
    const db = await mysql.createConnection({ host: p.host, port: p.port, user: p.user, password: p.password, database: p.database });
    try {
      await db.query('UPDATE nodes SET pm_password_enc = ? WHERE uuid = ?', [
        new SecretBox(randomBytes(32)).encrypt(sims[2]!.password, sealed.uuid),
        sealed.uuid,
      ]);
    } finally {
      await db.end();
    }
    await expect
      .poll(async () => (await nodes.getNode({ id: sealed.uuid })).lastError, { timeout: 20_000, interval: 500 })
      .toBe('cannot decrypt the BMC password: encrypted with a different key (do all controllers share secrets.key_file?)');
    // The sweep goes on for everyone else: a change at another machine is still recorded.
    await sims[1]!.setChassisPower(true);
    await expect.poll(async () => (await nodes.getNode({ id: good.uuid })).powerState, { timeout: 20_000, interval: 500 }).toBe('on');
    expect(ctl.logs()).not.toContain('power sync sweep failed');
    expect((await nodes.getNode({ id: sealed.uuid })).powerSyncFailures).toBe(0);
  });
});
