/**
 * The esbuild bundle (scripts/build-agent.sh) as the ramdisk runs it, against
 * a real controller: with discovery on, an unknown machine registers itself
 * from its inventory; a known one is found by its MACs with its agent token
 * and heartbeats its address; and the bundle serves GetInventory. The
 * controller serves TLS (the suite's default): the agent verifies it as the
 * ramdisk does, against the CA the boot port serves and bm.ca pins.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { nodes } from '../../db/schema.ts';
import { MysqlAgentTokens } from '../../controller/agents/tokens.ts';
import { connectAgent } from '../../controller/deploy/agent-client.ts';
import {
  startControllerProcess,
  type ControllerProcess,
  freePort,
  freeUdpPort,
  loopbackBootToml,
  repoRoot,
  startAgentProcess,
  type AgentProcess,
} from '../../controller/lab/index.ts';
import { fixtureRoot } from '../support/agent-fixtures.ts';

const run = promisify(execFile);

let dir: string;
let bundle: string;
let controller: ControllerProcess | undefined;
let admin: RpcConnection | undefined;
/** The kernel arguments that make an agent verify this controller: its CA's sha256 and where the boot port serves it. */
let pinned: string;
let db: DbHandle | undefined;
const agents: AgentProcess[] = [];

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bm-bundle-'));
  bundle = join(dir, 'agent.js');
  await run(join(repoRoot, 'scripts/build-agent.sh'), [bundle]);
  await writeFile(join(dir, 'disk'), '');
  await truncate(join(dir, 'disk'), 8 * 1024 * 1024);
  // The boot port is what serves the CA (/ca.pem) to agents.
  const httpPort = await freePort();
  const bootToml = await loopbackBootToml({ dir: join(dir, 'boot'), httpPort, tftpPort: await freeUdpPort() });
  controller = await startControllerProcess({
    extraToml: `[discovery]\nenabled = true\ngroup = "rack1"\nrate_per_second = 1\nburst = 5\n${bootToml}`,
    logLevel: 'warn',
  });
  const caSha = createHash('sha256')
    .update(await readFile(controller.ca!))
    .digest('hex');
  pinned = `bm.ca=${caSha} bm.ca_url=http://127.0.0.1:${httpPort}/ca.pem`;
  admin = connect(controller.url, { metadata: { authorization: `Bearer ${controller.token}` } });
  db = await openDatabase(controller.databaseUrl, { connectionLimit: 2 });
}, 120_000);

afterAll(async () => {
  await Promise.all(agents.splice(0).map((agent) => agent.stop()));
  admin?.close();
  await db?.close();
  await controller?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the bundled agent', () => {
  it('runs as one file, prints its usage, and an unknown machine registers itself in enroll', async () => {
    const help = await run(process.execPath, [bundle, '--help'], { cwd: dir });
    expect(help.stdout).toMatch(/Usage: node .*agent\.js \[options\]/);

    // The server-nvme-sata fixture: MACs 3c:ec:ef:1a:2b:3c/3d, unknown to this controller.
    const discoveryCmdline = join(dir, 'discovery-cmdline');
    await writeFile(discoveryCmdline, `BOOT_IMAGE=vmlinuz ${pinned} quiet\n`);
    const agent = await startAgentProcess({
      script: bundle,
      token: 'unused-token-for-serving',
      target: join(dir, 'disk'),
      root: fixtureRoot('server-nvme-sata'),
      controller: `https://${controller!.url}`,
      extraArgs: ['--cmdline', discoveryCmdline],
    });
    agents.push(agent);
    const nodeUuid = await waitFor(
      'registration',
      async () => /"msg":"registered with the controller","node":"([0-9a-f-]{36})"/.exec(agent.output())?.[1],
    );
    expect(agent.output()).toContain('controller CA verified');
    const node = await admin!.client(NodeService).getNode({ id: nodeUuid });
    expect(node.provisionState).toBe('enroll');
    expect(node.group).toBe('rack1');
    expect(node.macs.sort()).toEqual(['3c:ec:ef:1a:2b:3c', '3c:ec:ef:1a:2b:3d']);
    expect(node.properties).toMatchObject({ discovered: 'true', vendor: 'Supermicro', boot_mode: 'uefi' });
    // A self-registered machine has no token yet, so it does not heartbeat.
    expect(agent.output()).toMatch(/no agent token: not heartbeating|"msg":"registered with the controller"/);
  });

  it('is found by its MACs with its token from the kernel command line, heartbeats its address, and serves GetInventory', async () => {
    // The qemu-uefi-virtio fixture's NIC: 52:54:00:12:34:56.
    const node = await admin!.client(NodeService).createNode({
      pmAddress: '192.0.2.10',
      pmUser: 'admin',
      pmPassword: 'secret',
      cpus: 2,
      memoryMb: 4096,
      localGb: 20,
      cpuArch: 'x86_64',
      mac: '52:54:00:12:34:56',
    });
    const token = await new MysqlAgentTokens(db!.db).issue(node.uuid, 60_000);
    const cmdline = join(dir, 'cmdline');
    await writeFile(
      cmdline,
      `BOOT_IMAGE=vmlinuz initrd=initrd bm.controller=https://${controller!.url} ${pinned} bm.purpose=deploy bm.node=${node.uuid} bm.token=${token} quiet\n`,
    );
    const agent = await startAgentProcess({
      script: bundle,
      token: '',
      target: join(dir, 'disk'),
      root: fixtureRoot('qemu-uefi-virtio'),
      extraArgs: ['--cmdline', cmdline, '--advertise', '127.0.0.1:9', '--heartbeat-interval', '1'],
      register: true,
    });
    agents.push(agent);
    // No --controller flag: the controller comes from the command line file.
    await waitFor('lookup', async () => (agent.output().includes('"msg":"found by the controller"') ? true : undefined));
    const seen = await waitFor('heartbeat', async () => {
      const rows = await db!.db
        .select({ address: nodes.agentAddress, seen: nodes.agentSeenAt })
        .from(nodes)
        .where(eq(nodes.uuid, node.uuid));
      return rows[0]?.address ? rows[0] : undefined;
    });
    expect(seen.address).toBe('127.0.0.1:9');
    expect(seen.seen).toBeInstanceOf(Date);

    const conn = connectAgent(agent.address, token);
    try {
      const inventory = await conn.client.getInventory({});
      expect(inventory.cpu?.count).toBe(2);
      expect(inventory.nics.map((n) => n.mac)).toEqual(['52:54:00:12:34:56']);
      expect(inventory.bootMode).toBe('uefi');
    } finally {
      conn.close();
    }
    expect(agent.output()).not.toContain(token);
  });
});
