/**
 * Fan-out inside the conductor's deploy flow: a real controller process
 * (MariaDB, NATS), three virtual machines whose BMCs speak IPMI and whose
 * network boot starts a real agent, and three instances of one image booted
 * at once. Whether a given deploy is relayed depends on when its agent calls
 * back (a deploy that starts after the others finished is fed by the
 * controller): every instance ACTIVE, every disk byte-exact, each deploy's
 * `deploy.written` event names the relay that fed it, if any, which must be
 * one of the other nodes, and since the three streams overlap (seen: two of
 * three relayed, in every run) at least one was relayed.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
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

const MIB = 1024 * 1024;
const IMAGE_BYTES = 96 * MIB;
const NODES = 3;

let dir: string;
let ctl: ControllerProcess;
let api: RpcConnection;
let env: Record<string, string>;
let imageSha = '';
let httpPort = 0;
const machines: VirtualNode[] = [];
const log: string[] = [];

async function machine(i: number): Promise<VirtualNode> {
  const name = `fan-${i}`;
  const m = new VirtualNode({
    name,
    mac: `52:54:00:0d:00:${String(i).padStart(2, '0')}`,
    bmcPassword: `fan-${i}-secret`,
    diskBytes: IMAGE_BYTES + 128 * MIB,
    dir: path.join(dir, name),
    bootUrl: `http://127.0.0.1:${httpPort}`,
    say: (msg) => log.push(msg),
  });
  await m.start();
  machines.push(m);
  await createNodeWithBmctl(m, env, { name: name, cpus: 2, memoryMb: 2048 });
  await provisionWithBmctl(name, ['manage', 'provide'], env, log);
  return m;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-fanout-flow-'));
  httpPort = await freePort();
  const bootToml = await loopbackBootToml({ dir, httpPort, tftpPort: await freeUdpPort() });
  ctl = await startControllerProcess({
    logLevel: 'info',
    extraToml: ['[conductor]', 'callback_timeout_s = 60', 'poll_ms = 100', 'deploy_fanout = 1', bootToml].join('\n'),
  });
  env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
  api = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
  const raw = path.join(dir, 'image.raw');
  const handle = await open(raw, 'w');
  await handle.truncate(IMAGE_BYTES);
  for (let mib = 0; mib < IMAGE_BYTES / MIB; mib += 4) await handle.write(randomBytes(3 * MIB), 0, 3 * MIB, mib * MIB);
  await handle.close();
  imageSha = await sha256OfFilePrefix(raw, IMAGE_BYTES);
  const up = await runBmctl(['image', 'create', raw, '--name', 'fan-image', '--disk-format', 'raw'], env, 60_000);
  expect(up.code, up.stderr).toBe(0);
  const flavor = await runBmctl(['flavor', 'create', 'fan', '--ram', '1024', '--disk', '1', '--cpus', '1'], env);
  expect(flavor.code, flavor.stderr).toBe(0);
  await Promise.all(Array.from({ length: NODES }, (_, i) => machine(i + 1)));
}, 300_000);

afterAll(async () => {
  api?.close();
  await Promise.all(machines.map((m) => m.stop().catch(() => undefined)));
  await ctl?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('fan-out in the deploy flow', () => {
  it('boots three instances of one image at once to ACTIVE, each disk byte-exact, relays named in deploy.written', async () => {
    const booted = await Promise.all(
      Array.from({ length: NODES }, (_, i) =>
        runBmctl(['boot', '--flavor', 'fan', '--image', 'fan-image', '--wait', '--timeout', '180', `fan-vm${i + 1}`], env, 200_000),
      ),
    );
    for (const b of booted) expect(b.code, `${b.stdout}${b.stderr}\n${ctl.logs().slice(-3000)}`).toBe(0);
    for (const m of machines) expect(await sha256OfFilePrefix(m.disk, IMAGE_BYTES)).toBe(imageSha);

    const names = machines.map((m) => m.o.name);
    const uuids = await Promise.all(names.map(async (name) => (await api.client(NodeService).getNode({ id: name })).uuid));
    const relays: string[] = [];
    for (const name of names) {
      const diag = await runBmctl(['node', 'diagnose', name], env);
      const events = (JSON.parse(diag.stdout) as { recentEvents: { type: string; details: Record<string, string> }[] }).recentEvents;
      const written = events.find((e) => e.type === 'deploy.written');
      expect(written, `${name}: ${diag.stdout.slice(0, 2000)}`).toBeDefined();
      const relay = written?.details.relay;
      if (relay !== undefined) {
        expect(uuids).toContain(relay);
        expect(relay).not.toBe(uuids[names.indexOf(name)]);
        relays.push(relay);
      }
    }
    // No token in the controller's log, relayed or not.
    for (const m of machines) expect(ctl.logs()).not.toContain(m.o.bmcPassword);
    // The three deploys overlap (all three ramdisks boot at once, each stream takes seconds): at least one is relayed.
    expect(relays.length, ctl.logs().slice(-3000)).toBeGreaterThanOrEqual(1);
  }, 300_000);
});
