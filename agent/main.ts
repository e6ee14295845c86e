/**
 * The deploy agent: `node agent.js` in the ramdisk. It serves
 * bm.agent.v1.AgentService (port 9999 by default) and makes itself known to
 * the controller named on the kernel command line. Flags and environment
 * variables override the command line, so tests run it on any machine with
 * a file as its disk and a fixture tree as its /proc and /sys.
 *
 * The ramdisk runs it as `node --max-semi-space-size=1 --max-old-space-size=64
 * --heap-growing-percent=300 --expose-gc agent.js`: small V8 heaps collect the streamed
 * frame buffers sooner, which lowers its peak RSS; the growing percent keeps
 * the old generation's limit well above its ~9 MB of live objects, because V8
 * counts the external memory allocated since the last full GC (Node's HTTP/2
 * read buffers, about 1 GiB per GiB received) against that limit, and with
 * the default step a full GC ran every 16 MiB streamed
 * (docs/performance-notes.md); gc() lets it scavenge the dead read buffers
 * every 2 MiB received (server/young-gc.ts). The ramdisk also sets MALLOC_ARENA_MAX=2:
 * glibc's extra malloc arenas, one per thread that allocates, kept freed
 * memory as RSS; and MALLOC_TRIM_THRESHOLD_=67108864: Node copies each
 * socket read into a buffer of its own, and with glibc's default the heap's
 * freed top went back to the kernel and faulted in again, about a third of
 * the main thread's CPU.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { controllerTarget, mergeParams, parseKernelParams, type KernelParams } from './cmdline.ts';
import type { RootDeviceHints } from './disk/root-device.ts';
import { DEFAULT_FSYNC_INTERVAL_BYTES } from './disk/writer.ts';
import { readInventory } from './inventory/inventory.ts';
import { under } from './inventory/sysfs.ts';
import { runRegistration } from './register.ts';
import { controllerTls } from './controller-tls.ts';
import type { AgentConfig, DigestPolicy } from './server/context.ts';
import { startAgentServer } from './server/index.ts';
import { toWireInventory } from './server/inventory.ts';

const HELP = `Usage: node [--max-semi-space-size=1 --max-old-space-size=64 --heap-growing-percent=300 --expose-gc] agent.js [options]

Serves bm.agent.v1.AgentService and registers with the controller named by
bm.controller=, bm.node= and bm.token= on the kernel command line.

  --port N                 gRPC port (default 9999; 0 picks a free one)
  --listen HOST            address to listen on (default 0.0.0.0)
  --advertise HOST:PORT    address the controller should dial (default: first IPv4 + port)
  --root PATH              root holding /proc and /sys (default /)
  --cmdline PATH           kernel command line file (default <root>/proc/cmdline)
  --target PATH            write to this file or device instead of choosing a disk
  --target-zeroed          the target reads as zeros at start (fresh sparse file)
  --root-hints JSON        root device hints, e.g. '{"size":">= 100"}'
  --controller URL         overrides bm.controller (env BM_AGENT_CONTROLLER)
  --node UUID              overrides bm.node (env BM_AGENT_NODE)
  --token TOKEN            overrides bm.token (env BM_AGENT_TOKEN, preferred: argv is public)
  --no-register            serve only; do not contact the controller
  --heartbeat-interval S   seconds between heartbeats (default 30)
  --commit-interval BYTES  default fdatasync interval for WriteImage (default 64 MiB)
  --digest MODE            read-back | as-written | auto (default read-back)
  --reboot-command CMD     in-band Reboot runs this (default "reboot -f")
  --poweroff-command CMD   in-band PowerOff runs this (default "poweroff -f")
  --help                   this text
`;

function log(message: string, fields: Readonly<Record<string, unknown>> = {}): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), msg: message, ...fields })}\n`);
}

function fail(message: string): never {
  process.stderr.write(`agent: ${message}\n`);
  process.exit(2);
}

function integer(name: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) fail(`--${name} must be an integer in [${min}, ${max}], got "${text}"`);
  return value;
}

function firstIpv4(): string {
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const address of addresses ?? []) if (address.family === 'IPv4' && !address.internal) return address.address;
  }
  return '127.0.0.1';
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      listen: { type: 'string' },
      advertise: { type: 'string' },
      root: { type: 'string' },
      cmdline: { type: 'string' },
      target: { type: 'string' },
      'target-zeroed': { type: 'boolean' },
      'root-hints': { type: 'string' },
      controller: { type: 'string' },
      node: { type: 'string' },
      token: { type: 'string' },
      'no-register': { type: 'boolean' },
      'heartbeat-interval': { type: 'string' },
      'commit-interval': { type: 'string' },
      digest: { type: 'string' },
      'reboot-command': { type: 'string' },
      'poweroff-command': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const root = values.root ?? '/';
  const port = integer('port', values.port, 9999, 0, 65535);
  const digest = (values.digest ?? 'read-back') as DigestPolicy;
  if (!['read-back', 'as-written', 'auto'].includes(digest)) fail(`--digest must be read-back, as-written or auto, got "${digest}"`);
  let rootHints: RootDeviceHints | undefined;
  if (values['root-hints'] !== undefined) {
    try {
      rootHints = JSON.parse(values['root-hints']) as RootDeviceHints;
    } catch {
      fail('--root-hints must be a JSON object');
    }
  }

  const cmdlinePath = values.cmdline ?? under(root, 'proc/cmdline');
  const fromCmdline = parseKernelParams(await readFile(cmdlinePath, 'utf8').catch(() => ''));
  const fromEnv: KernelParams = {
    ...(process.env.BM_AGENT_CONTROLLER ? { controller: process.env.BM_AGENT_CONTROLLER } : {}),
    ...(process.env.BM_AGENT_NODE ? { nodeUuid: process.env.BM_AGENT_NODE } : {}),
    ...(process.env.BM_AGENT_TOKEN ? { token: process.env.BM_AGENT_TOKEN } : {}),
  };
  const fromFlags: KernelParams = {
    ...(values.controller ? { controller: values.controller } : {}),
    ...(values.node ? { nodeUuid: values.node } : {}),
    ...(values.token ? { token: values.token } : {}),
  };
  const params = mergeParams(fromCmdline, fromEnv, fromFlags);

  const config: AgentConfig = {
    root,
    ...(values.target ? { targetPath: values.target } : {}),
    ...(rootHints ? { rootHints } : {}),
    targetZeroed: values['target-zeroed'] ?? false,
    commitIntervalBytes: integer('commit-interval', values['commit-interval'], DEFAULT_FSYNC_INTERVAL_BYTES, 1024 * 1024, 2 ** 40),
    digest,
    rebootCommand: (values['reboot-command'] ?? 'reboot -f').split(/\s+/).filter(Boolean),
    powerOffCommand: (values['poweroff-command'] ?? 'poweroff -f').split(/\s+/).filter(Boolean),
    log,
  };
  if (!params.token) log('no agent token: every call to this agent will be refused');

  const listen = values.listen ?? '0.0.0.0';
  const agent = await startAgentServer(config, {
    address: `${listen.includes(':') ? `[${listen}]` : listen}:${port}`,
    token: params.token,
  });
  log('listening', { address: `${listen}:${agent.port}`, port: agent.port, target: config.targetPath ?? 'by root device hints' });

  const stop = new AbortController();
  let registration: Promise<unknown> = Promise.resolve();
  if (!values['no-register'] && params.controller) {
    registration = runRegistration({
      controller: controllerTarget(params.controller),
      tls: controllerTls(params),
      ...(params.token ? { token: params.token } : {}),
      inventory: async () => toWireInventory(await readInventory({ root })),
      agentAddress: values.advertise ?? `${firstIpv4()}:${agent.port}`,
      heartbeatIntervalMs: integer('heartbeat-interval', values['heartbeat-interval'], 30, 1, 3600) * 1000,
      signal: stop.signal,
      log,
    });
  } else if (!values['no-register']) {
    log('no controller named (bm.controller= or --controller): serving without registering');
  }

  const shutdown = (signal: string): void => {
    log('stopping', { signal });
    stop.abort();
    void Promise.all([registration, agent.stop(2000)]).then(() => process.exit(0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  log('agent failed to start', { error: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
