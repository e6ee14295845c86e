/**
 * The agent channel with API TLS on, against real processes: the boot port
 * serves the CA at /ca.pem, the iPXE script's kernel command line carries
 * bm.ca=<sha256> and an https:// controller, an agent started with exactly
 * that command line verifies the controller and registers over TLS, and one
 * whose bm.ca names another certificate refuses to talk to the controller.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AgentProcess,
  type ControllerProcess,
  freePort,
  runBmctl,
  startAgentProcess,
  startControllerProcess,
} from '../../controller/lab/index.ts';
import { makeCa, makeServerCert, type CaFiles } from '../../controller/lab/tls-certs.ts';

let dir: string;
let ca: CaFiles;
let ctl: ControllerProcess;
let httpPort = 0;
const agents: AgentProcess[] = [];

async function waitFor(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The kernel arguments of an iPXE script's `kernel` line, as the ramdisk's /proc/cmdline would hold them. */
function kernelArgs(script: string): string {
  const line = script.split('\n').find((l) => l.startsWith('kernel '));
  if (!line) throw new Error(`no kernel line in:\n${script}`);
  return line.replace(/^kernel --name kernel \S+ /, '').replace(/ \|\| goto retry$/, '');
}

async function nodeList(): Promise<{ name?: string; provisionState?: string }[]> {
  const r = await runBmctl(['node', 'list', '--url', ctl.url, '--ca', ca.cert, '--json'], { BM_TOKEN: ctl.token });
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout) as { name?: string; provisionState?: string }[];
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bm-tls-agent-'));
  ca = await makeCa(dir, 'ca');
  const server = await makeServerCert(dir, ca, 'api');
  await mkdir(path.join(dir, 'http/deploy'), { recursive: true });
  await mkdir(path.join(dir, 'tftp'), { recursive: true });
  await writeFile(path.join(dir, 'http/deploy/vmlinuz'), 'kernel\n');
  await writeFile(path.join(dir, 'http/deploy/initrd'), 'ramdisk\n');
  httpPort = await freePort();
  const tftpPort = await freePort();
  ctl = await startControllerProcess({
    logLevel: 'info',
    tls: { cert: server.cert, key: server.key, ca: ca.cert },
    extraToml: [
      '[discovery]',
      'enabled = true',
      '[boot]',
      'server_address = "127.0.0.1"',
      'bind_address = "127.0.0.1"',
      'mode = "off"',
      `tftp_port = ${tftpPort}`,
      `http_port = ${httpPort}`,
      `tftp_root = "${path.join(dir, 'tftp')}"`,
      `http_root = "${path.join(dir, 'http')}"`,
    ].join('\n'),
  });
}, 60_000);

afterAll(async () => {
  for (const agent of agents) await agent.stop();
  await ctl?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function startAgent(name: string, cmdline: string): Promise<AgentProcess> {
  const file = path.join(dir, `${name}.cmdline`);
  await writeFile(file, `${cmdline}\n`);
  const agent = await startAgentProcess({
    token: 'agent-token-not-armed-0000',
    target: path.join(dir, `${name}.disk`),
    register: true,
    extraArgs: ['--cmdline', file, '--heartbeat-interval', '1'],
  });
  agents.push(agent);
  return agent;
}

describe('the agent channel with TLS on', () => {
  it('the boot port serves the CA, and the boot script pins it and names an https controller', async () => {
    const caPem = await readFile(ca.cert);
    const res = await fetch(`http://127.0.0.1:${httpPort}/ca.pem`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(caPem)).toBe(true);

    const script = await (await fetch(`http://127.0.0.1:${httpPort}/boot/52-54-00-77-00-01.ipxe`)).text();
    const sha = createHash('sha256').update(caPem).digest('hex');
    const args = kernelArgs(script);
    expect(args).toContain(`bm.controller=https://${ctl.url}`);
    expect(args).toContain(`bm.ca=${sha}`);
    expect(args).toContain(`bm.ca_url=http://127.0.0.1:${httpPort}/ca.pem`);
  });

  it('an agent whose bm.ca names another certificate refuses the controller and registers nothing', async () => {
    const script = await (await fetch(`http://127.0.0.1:${httpPort}/boot/52-54-00-77-00-02.ipxe`)).text();
    const wrong = 'f'.repeat(64);
    const agent = await startAgent('wrong', kernelArgs(script).replace(/bm\.ca=[0-9a-f]{64}/, `bm.ca=${wrong}`));
    await waitFor('the refusal', () => agent.output().includes('refusing the controller'));
    expect(agent.output()).toContain(`not ${wrong} from bm.ca=`);
    expect(agent.output()).not.toContain('registered with the controller');
    expect(await nodeList()).toEqual([]);
  }, 30_000);

  it("an agent with the script's own command line verifies the controller and registers over TLS", async () => {
    const script = await (await fetch(`http://127.0.0.1:${httpPort}/boot/52-54-00-77-00-03.ipxe`)).text();
    const agent = await startAgent('right', kernelArgs(script));
    await waitFor('the registration', () => agent.output().includes('registered with the controller'));
    expect(agent.output()).toContain('controller CA verified');
    const nodes = await nodeList();
    expect(nodes).toHaveLength(1);
    expect(nodes[0]!.provisionState).toBe('enroll');
  }, 30_000);
});
