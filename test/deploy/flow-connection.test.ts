/**
 * The conductor's flows open one HTTP/2 connection to an agent per
 * operation: a deploy streams the image and writes the config drive over
 * the same one, cleaning erases over its own. Real controller process
 * (MariaDB, NATS), a virtual machine whose BMC speaks IPMI and whose network
 * boot starts a real agent, which advertises a counting TCP forwarder in
 * front of itself: every connection the controller makes to the agent is
 * counted on the wire.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InstanceService } from '../../proto/gen/bm/v1/instance_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import {
  freePort,
  freeUdpPort,
  loopbackBootToml,
  runBmctl,
  sha256OfFilePrefix,
  startControllerProcess,
  type ControllerProcess,
  VirtualNode,
} from '../../controller/lab/index.ts';
import { createNodeWithBmctl, provisionWithBmctl } from '../support/bmctl-enroll.ts';
import { startCountingProxy, type CountingProxy } from '../support/counting-proxy.ts';

const MIB = 1024 * 1024;
const IMAGE_BYTES = 16 * MIB;

let dir: string;
let ctl: ControllerProcess;
let api: RpcConnection;
let env: Record<string, string>;
let imageSha = '';
let machine: VirtualNode | undefined;
const log: string[] = [];
/** One forwarder per ramdisk boot, in boot order. */
const forwarders: CountingProxy[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-flow-conn-'));
  const httpPort = await freePort();
  const bootToml = await loopbackBootToml({ dir, httpPort, tftpPort: await freeUdpPort() });
  ctl = await startControllerProcess({
    extraToml: ['[conductor]', 'callback_timeout_s = 30', 'poll_ms = 100', '[power]', 'settle_timeout_s = 10', bootToml].join('\n'),
  });
  env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
  api = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
  const raw = path.join(dir, 'image.raw');
  const handle = await open(raw, 'w');
  await handle.truncate(IMAGE_BYTES);
  for (let mib = 0; mib < 16; mib += 2) await handle.write(randomBytes(MIB), 0, MIB, mib * MIB);
  await handle.close();
  imageSha = await sha256OfFilePrefix(raw, IMAGE_BYTES);
  const up = await runBmctl(['image', 'create', raw, '--name', 'flow-conn-image', '--disk-format', 'raw'], env, 60_000);
  expect(up.code, up.stderr).toBe(0);

  machine = new VirtualNode({
    name: 'flow-conn',
    mac: '52:54:00:0e:00:01',
    bmcPassword: 'flow-conn-secret',
    diskBytes: 64 * MIB,
    dir: path.join(dir, 'flow-conn'),
    bootUrl: `http://127.0.0.1:${httpPort}`,
    say: (msg) => log.push(msg),
    agentAddress: async (port) => {
      const forwarder = await startCountingProxy(port);
      forwarders.push(forwarder);
      return forwarder.address;
    },
  });
  await machine.start();
}, 120_000);

afterAll(async () => {
  api?.close();
  await machine?.stop().catch(() => undefined);
  await Promise.all(forwarders.map((f) => f.close()));
  await ctl?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the conductor's connection to an agent", () => {
  it('is one per operation: the deploy streams the image and writes the config drive over one', async () => {
    const m = machine!;
    await createNodeWithBmctl(m, env, { name: 'flow-conn', cpus: 2, memoryMb: 2048 });
    await provisionWithBmctl('flow-conn', ['manage', 'provide'], env, log);
    // provide cleaned the disk through the first ramdisk boot's agent.
    expect(forwarders).toHaveLength(1);
    expect(forwarders[0]!.connections()).toBe(1);

    const flavor = await runBmctl(['flavor', 'create', 'flow-conn', '--ram', '1024', '--disk', '1', '--cpus', '1'], env);
    expect(flavor.code, flavor.stderr).toBe(0);
    const booted = await runBmctl(
      ['boot', '--flavor', 'flow-conn', '--image', 'flow-conn-image', '--wait', '--timeout', '120', 'flow-conn-vm'],
      env,
      150_000,
    );
    expect(booted.code, `${booted.stdout}${booted.stderr}\n${log.join('\n')}`).toBe(0);
    const vm = await api.client(InstanceService).getInstance({ id: 'flow-conn-vm' });
    expect(vm).toMatchObject({ state: 'ACTIVE', progress: 100 });
    expect(await sha256OfFilePrefix(m.disk, IMAGE_BYTES)).toBe(imageSha);
    // The deploy's ramdisk boot: image stream and config drive, one connection.
    expect(forwarders).toHaveLength(2);
    expect(forwarders[1]!.connections()).toBe(1);
  }, 300_000);
});
