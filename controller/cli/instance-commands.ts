/**
 * bmctl boot and bmctl instance ...: the seed's `nova boot`, `nova list`,
 * `nova delete`. `boot --wait` follows the deploy live (NATS events through
 * the API) with a progress bar, and exits non-zero when it ends in ERROR.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { Presets, SingleBar } from 'cli-progress';
import { EventService } from '../../proto/gen/bm/v1/event_pb.js';
import { InstanceSchema, InstanceService, type Instance } from '../../proto/gen/bm/v1/instance_pb.js';
import type { RpcConnection } from '../../proto/rpc/index.ts';
import { withApi } from './connection.ts';
import { CliUsageError } from './errors.ts';
import type { GlobalOptions } from './options.ts';
import { messageJson, printJson, printMessage, table } from './output.ts';

const FINAL = new Set(['ACTIVE', 'ERROR']);

function instanceRow(i: Instance): string[] {
  return [
    i.uuid,
    i.name,
    i.state,
    i.state === 'BUILD' ? `${i.progress}%` : '',
    i.address,
    i.nodeUuid,
    i.nodeProvisionState,
    i.powerState,
    i.project,
    i.lastError,
  ];
}

const HEADERS = ['UUID', 'Name', 'Status', 'Progress', 'Address', 'Node', 'Node_State', 'Power', 'Project', 'Last_Error'];

async function readMaybe(file: string | undefined, what: string): Promise<Buffer | null> {
  if (!file) return null;
  return readFile(file).catch((err: NodeJS.ErrnoException) => {
    throw new CliUsageError(`cannot read ${what} ${file}: ${err.code ?? err.message}`);
  });
}

/** Follows one instance until ACTIVE or ERROR: events drive the bar, a slow poll guards against a missed event. */
async function follow(conn: RpcConnection, start: Instance, timeoutMs: number, showBar: boolean): Promise<Instance> {
  const instances = conn.client(InstanceService);
  const bar = showBar
    ? new SingleBar({ format: `${start.name} [{bar}] {percentage}% {stage}`, hideCursor: true }, Presets.shades_classic)
    : null;
  bar?.start(100, 0, { stage: 'scheduled' });
  const abort = new AbortController();
  const deadline = setTimeout(() => abort.abort(), timeoutMs);
  let current = start;
  const watch = (async () => {
    if (!start.nodeUuid) return;
    try {
      for await (const e of conn.client(EventService).watch({ nodeUuid: start.nodeUuid }, { signal: abort.signal })) {
        if (e.type === 'deploy.progress') bar?.update(Number(e.details.percent ?? 0), { stage: 'writing the image' });
        else if (e.type === 'provision.changed') {
          bar?.update({ stage: e.provisionState });
          abort.signal.throwIfAborted();
          if (e.provisionState === 'active' || e.provisionState === 'deploy-failed') break;
        } else if (e.type === 'power.changed')
          bar?.update({ stage: `power ${e.details.target ?? e.powerState}${e.details.bootDevice ? ` (${e.details.bootDevice})` : ''}` });
      }
    } catch {
      // The poll below decides; a broken watch only loses the live bar.
    }
  })();
  try {
    while (!abort.signal.aborted) {
      current = await instances.getInstance({ id: start.uuid });
      if (FINAL.has(current.state)) break;
      await Promise.race([watch, new Promise((r) => setTimeout(r, 2000))]);
    }
    if (!FINAL.has(current.state)) current = await instances.getInstance({ id: start.uuid });
    bar?.update(current.state === 'ACTIVE' ? 100 : current.progress, { stage: current.state });
    return current;
  } finally {
    clearTimeout(deadline);
    abort.abort();
    bar?.stop();
    await watch;
  }
}

export function registerInstanceCommands(program: Command, globals: () => GlobalOptions): void {
  program
    .command('boot <name>')
    .description('boot an instance: schedule a node for the flavor and deploy the image onto it')
    .requiredOption('--flavor <flavor>', 'flavor name or uuid')
    .requiredOption('--image <image>', 'image name or uuid (raw or qcow2)')
    .option('--user-data <file>', 'cloud-init user data (at most 64 KiB)')
    .option('--key-file <file>', 'an SSH public key file (repeatable)', (v: string, prev: string[]) => [...prev, v], [])
    .option('--static <address/prefix,gateway[,dns...]>', 'static network on the first port instead of DHCP')
    .option('--wait', 'follow the deploy until ACTIVE or ERROR (non-zero exit on ERROR)', false)
    .option('--timeout <s>', 'give up waiting after this many seconds', '3600')
    .action(
      async (
        name: string,
        o: { flavor: string; image: string; userData?: string; keyFile: string[]; static?: string; wait: boolean; timeout: string },
      ) => {
        const g = globals();
        const userData = (await readMaybe(o.userData, 'user data')) ?? new Uint8Array();
        const sshKeys: string[] = [];
        for (const f of o.keyFile) {
          const text = (await readMaybe(f, 'key file'))!.toString('utf8');
          sshKeys.push(
            ...text
              .split('\n')
              .map((l) => l.trim())
              .filter((l) => l !== '' && !l.startsWith('#')),
          );
        }
        let network: { mode: string; address: string; netmask: string; gateway: string; dns: string[] } | undefined;
        if (o.static) {
          const [cidr = '', gateway = '', ...dns] = o.static.split(',');
          const [address = '', prefix = ''] = cidr.split('/');
          if (!address || !prefix) throw new CliUsageError(`--static takes ADDRESS/PREFIX,GATEWAY[,DNS...], got "${o.static}"`);
          network = { mode: 'static', address, netmask: prefix, gateway, dns };
        }
        await withApi(g, async (conn) => {
          const created = await conn
            .client(InstanceService)
            .createInstance({ name, flavor: o.flavor, image: o.image, userData, sshKeys, ...(network ? { network } : {}) });
          if (!o.wait) {
            printMessage(g.json, InstanceSchema, created);
            return;
          }
          if (!g.json) process.stderr.write(`instance ${created.uuid} scheduled on node ${created.nodeUuid}\n`);
          const final = await follow(conn, created, Number(o.timeout) * 1000, process.stderr.isTTY && !g.json);
          if (g.json) printJson(messageJson(InstanceSchema, final));
          else
            process.stdout.write(
              `${final.uuid} ${final.name} ${final.state}${final.address ? ` address=${final.address}` : ''}${final.lastError ? ` last_error="${final.lastError}"` : ''}\n`,
            );
          if (final.state !== 'ACTIVE') process.exitCode = 1;
        });
      },
    );

  const instance = program.command('instance').description('instances: list, show, delete, reboot, power');

  instance
    .command('list')
    .description('list instances (a member token: its project only)')
    .option('--project <p>', 'admin: only this project')
    .action(async (o: { project?: string }) => {
      const g = globals();
      await withApi(g, async (conn) => {
        const { instances } = await conn.client(InstanceService).listInstances({ project: o.project ?? '' });
        if (g.json) printJson(instances.map((i) => messageJson(InstanceSchema, i)));
        else process.stdout.write(table(HEADERS, instances.map(instanceRow)) + '\n');
      });
    });

  instance
    .command('show <id>')
    .description('show one instance by uuid or name')
    .action(async (id: string) => {
      const g = globals();
      await withApi(g, async (conn) => {
        printMessage(g.json, InstanceSchema, await conn.client(InstanceService).getInstance({ id }));
      });
    });

  instance
    .command('delete <id>')
    .description('delete an instance: power off, erase the disk, return the node to the pool')
    .option('--wait', 'wait until the instance is gone', false)
    .option('--timeout <s>', 'give up waiting after this many seconds', '1800')
    .action(async (id: string, o: { wait: boolean; timeout: string }) => {
      const g = globals();
      await withApi(g, async (conn) => {
        const instances = conn.client(InstanceService);
        let current: Instance | null = await instances.deleteInstance({ id });
        const deadline = Date.now() + Number(o.timeout) * 1000;
        while (o.wait && current && current.state === 'DELETING' && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 500));
          current = await instances.getInstance({ id: current.uuid }).catch(() => null);
        }
        if (g.json) printJson(current ? messageJson(InstanceSchema, current) : { deleted: id });
        else
          process.stdout.write(
            current
              ? `${current.uuid} ${current.state}${current.lastError ? ` last_error="${current.lastError}"` : ''}\n`
              : `deleted instance ${id}\n`,
          );
        if (current?.state === 'ERROR') process.exitCode = 1;
      });
    });

  instance
    .command('reboot <id>')
    .description('reboot: soft (ACPI shutdown, then on) unless --hard (power cycle)')
    .option('--hard', 'power cycle through the BMC', false)
    .action(async (id: string, o: { hard: boolean }) => {
      const g = globals();
      await withApi(g, async (conn) => {
        printMessage(
          g.json,
          InstanceSchema,
          await conn.client(InstanceService).rebootInstance({ id, hard: o.hard }, { timeoutMs: 300_000 }),
        );
      });
    });

  for (const target of ['on', 'off'] as const) {
    instance
      .command(`power-${target} <id>`)
      .description(`power the instance's machine ${target}`)
      .action(async (id: string) => {
        const g = globals();
        await withApi(g, async (conn) => {
          printMessage(g.json, InstanceSchema, await conn.client(InstanceService).setInstancePower({ id, target }, { timeoutMs: 120_000 }));
        });
      });
  }
}
