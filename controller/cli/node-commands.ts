/** bmctl node ...: the seed's baremetal-node-create/-list/-show/-delete. */
import type { Command } from 'commander';
import { NodeSchema, NodeService, type Node } from '../../proto/gen/bm/v1/node_pb.js';
import { messageJson, printDeleted, printJson, printMessage, table } from './output.ts';
import { DEFAULT_GROUP, DEFAULT_PM_PORT, DEFAULT_POWER_DRIVER, POWER_DRIVERS } from '../nodes/index.ts';
import { withApi } from './connection.ts';
import { CliUsageError } from './errors.ts';
import type { Globals } from './options.ts';
import { PM_PASSWORD_ENV, pmPasswordFrom } from './secret-input.ts';
import { registerNodePowerCommands } from './node-power-commands.ts';
import { registerNodeDiagnoseCommand } from './node-diagnose-command.ts';

export const NODE_HEADERS = [
  'UUID',
  'Name',
  'CPUs',
  'Memory_MB',
  'Disk_GB',
  'MAC',
  'PM_Address',
  'PM_User',
  'Provision_State',
  'Power',
  'Maintenance',
] as const;

export function nodeRow(n: Node): string[] {
  return [
    n.uuid,
    n.name,
    String(n.cpus),
    String(n.memoryMb),
    String(n.localGb),
    n.macs.join(','),
    `${n.pmAddress}:${n.pmPort}`,
    n.pmUser,
    n.provisionState,
    n.powerState,
    n.maintenance ? 'yes' : 'no',
  ];
}

function int(name: string): (v: string) => number {
  return (v) => {
    if (!/^-?\d+$/.test(v)) throw new CliUsageError(`--${name} must be a whole number, got "${v}"`);
    const n = Number(v);
    // Negative values reach the API as unsigned garbage; refuse them here with the field's name.
    if (n < 0) throw new CliUsageError(`--${name} must not be negative, got ${v}`);
    return n;
  };
}

function properties(v: string, prev: Record<string, string>): Record<string, string> {
  const eq = v.indexOf('=');
  if (eq <= 0) throw new CliUsageError(`--property takes KEY=VALUE, got "${v}"`);
  return { ...prev, [v.slice(0, eq)]: v.slice(eq + 1) };
}

export function registerNodeCommands(program: Command, globals: Globals): void {
  const node = program.command('node').description('enroll, list and change nodes');
  registerNodePowerCommands(node, globals);
  registerNodeDiagnoseCommand(node, globals);

  node
    .command('create')
    .description('enroll a node with its BMC credentials and first MAC')
    .requiredOption('--pm-address <host>', 'BMC address')
    .option('--pm-port <port>', 'BMC UDP port', int('pm-port'), DEFAULT_PM_PORT)
    .requiredOption('--pm-user <user>', 'BMC user')
    .option('--pm-password-stdin', `read the BMC password from stdin (asked without echo on a terminal); or set ${PM_PASSWORD_ENV}`)
    .option('--pm-password <password>', `BMC password on the command line: visible to every user in ps; prefer ${PM_PASSWORD_ENV}`)
    .requiredOption('--cpus <n>', 'CPU count', int('cpus'))
    .requiredOption('--memory-mb <mb>', 'RAM in MiB', int('memory-mb'))
    .requiredOption('--disk-gb <gb>', 'local disk in GiB', int('disk-gb'))
    .option('--arch <arch>', 'CPU architecture', 'x86_64')
    .requiredOption('--mac <mac>', 'MAC of the PXE interface')
    .option('--name <name>', 'a unique name')
    .option('--group <group>', 'L2 group (conductor group)', DEFAULT_GROUP)
    .option('--driver <driver>', `power driver: ${POWER_DRIVERS.join(', ')}`, DEFAULT_POWER_DRIVER)
    .option('--property <key=value>', 'extra property (repeatable)', properties, {})
    .option('--resource-class <rc>', "matched against a flavor's resource_class", '')
    .action(
      async (o: {
        pmAddress: string;
        pmPort: number;
        pmUser: string;
        pmPassword?: string;
        pmPasswordStdin?: boolean;
        cpus: number;
        memoryMb: number;
        diskGb: number;
        arch: string;
        mac: string;
        name?: string;
        group: string;
        driver: string;
        property: Record<string, string>;
        resourceClass: string;
      }) => {
        const g = globals();
        const password = (await pmPasswordFrom(o, true))!;
        const created = await withApi(g, (conn) =>
          conn.client(NodeService).createNode({
            pmAddress: o.pmAddress,
            pmPort: o.pmPort,
            pmUser: o.pmUser,
            pmPassword: password,
            cpus: o.cpus,
            memoryMb: o.memoryMb,
            localGb: o.diskGb,
            cpuArch: o.arch,
            mac: o.mac,
            name: o.name ?? '',
            group: o.group,
            powerDriver: o.driver,
            properties: o.property,
            resourceClass: o.resourceClass,
          }),
        );
        printMessage(g.json, NodeSchema, created);
      },
    );

  node
    .command('list')
    .description('list nodes (every page, or --limit of them)')
    .option('--state <state>', 'only nodes in this provision state')
    .option('--group <group>', 'only nodes of this group')
    .option('--maintenance <bool>', 'only nodes in (true) or out of (false) maintenance')
    .option('--associated <v>', 'true, false, or an instance uuid')
    .option('--limit <n>', 'at most this many nodes', int('limit'))
    .action(async (o: { state?: string; group?: string; maintenance?: string; associated?: string; limit?: number }) => {
      const g = globals();
      if (o.maintenance !== undefined && o.maintenance !== 'true' && o.maintenance !== 'false')
        throw new CliUsageError('--maintenance takes true or false');
      const all: Node[] = [];
      await withApi(g, async (conn) => {
        const client = conn.client(NodeService);
        let marker = '';
        do {
          const want = o.limit === undefined ? 1000 : Math.min(1000, o.limit - all.length);
          const page = await client.listNodes({
            limit: want,
            marker,
            provisionState: o.state ?? '',
            group: o.group ?? '',
            associated: o.associated ?? '',
            ...(o.maintenance !== undefined ? { maintenance: o.maintenance === 'true' } : {}),
          });
          all.push(...page.nodes);
          marker = page.nextMarker;
        } while (marker !== '' && (o.limit === undefined || all.length < o.limit));
      });
      if (g.json) printJson(all.map((n) => messageJson(NodeSchema, n)));
      else process.stdout.write(table(NODE_HEADERS, all.map(nodeRow)) + '\n');
    });

  node
    .command('show <id>')
    .description('show one node by uuid or name')
    .action(async (id: string) => {
      const g = globals();
      printMessage(g.json, NodeSchema, await withApi(g, (conn) => conn.client(NodeService).getNode({ id })));
    });

  node
    .command('update <id>')
    .description('change a node; only the options given are changed')
    .option('--name <name>')
    .option('--group <group>')
    .option('--cpus <n>', '', int('cpus'))
    .option('--memory-mb <mb>', '', int('memory-mb'))
    .option('--disk-gb <gb>', '', int('disk-gb'))
    .option('--arch <arch>')
    .option('--pm-address <host>')
    .option('--pm-port <port>', '', int('pm-port'))
    .option('--pm-user <user>')
    .option(
      '--pm-password-stdin',
      `change the BMC password to one read from stdin (asked without echo on a terminal); ${PM_PASSWORD_ENV} set in the environment changes it too`,
    )
    .option('--pm-password <password>', `BMC password on the command line: visible to every user in ps; prefer ${PM_PASSWORD_ENV}`)
    .option('--driver <driver>', `power driver: ${POWER_DRIVERS.join(', ')}`)
    .option('--property <key=value>', 'replace properties (repeatable)', properties)
    .action(
      async (
        id: string,
        o: {
          driver?: string;
          name?: string;
          group?: string;
          cpus?: number;
          memoryMb?: number;
          diskGb?: number;
          arch?: string;
          pmAddress?: string;
          pmPort?: number;
          pmUser?: string;
          pmPassword?: string;
          pmPasswordStdin?: boolean;
          property?: Record<string, string>;
        },
      ) => {
        const g = globals();
        const pmPassword = await pmPasswordFrom(o, false);
        // Said aloud, since a variable left over from an earlier create would change the password silently.
        if (pmPassword !== undefined && !o.pmPasswordStdin && o.pmPassword === undefined)
          process.stderr.write(`bmctl: changing the BMC password to the value of ${PM_PASSWORD_ENV}\n`);
        const n = await withApi(g, (conn) =>
          conn.client(NodeService).updateNode({
            id,
            name: o.name,
            group: o.group,
            cpus: o.cpus,
            memoryMb: o.memoryMb,
            localGb: o.diskGb,
            cpuArch: o.arch,
            pmAddress: o.pmAddress,
            pmPort: o.pmPort,
            pmUser: o.pmUser,
            pmPassword,
            powerDriver: o.driver,
            properties: o.property ?? {},
          }),
        );
        printMessage(g.json, NodeSchema, n);
      },
    );

  node
    .command('delete <id>')
    .description('delete a node (refused while it is deploying or active)')
    .action(async (id: string) => {
      const g = globals();
      await withApi(g, (conn) => conn.client(NodeService).deleteNode({ id }));
      printDeleted(g.json, 'node', id);
    });
}
