/** bmctl port ...: the seed's baremetal-interface-add/-list/-remove. */
import type { Command } from 'commander';
import { PortSchema, PortService, type Port } from '../../proto/gen/bm/v1/port_pb.js';
import { withApi } from './connection.ts';
import { messageJson, printDeleted, printJson, table } from './output.ts';
import type { Globals } from './options.ts';

export function registerPortCommands(program: Command, globals: Globals): void {
  const port = program.command('port').description('network interfaces (MACs) of nodes');

  port
    .command('add <node> <mac>')
    .description('add a MAC to a node')
    .action(async (node: string, mac: string) => {
      const g = globals();
      const p = await withApi(g, (conn) => conn.client(PortService).createPort({ nodeId: node, mac }));
      if (g.json) printJson(messageJson(PortSchema, p));
      else process.stdout.write(table(['UUID', 'Node', 'MAC'], [[p.uuid, p.nodeUuid, p.mac]]) + '\n');
    });

  port
    .command('list')
    .description('list ports')
    .option('--node <node>', "only this node's ports")
    .action(async (o: { node?: string }) => {
      const g = globals();
      const all: Port[] = [];
      await withApi(g, async (conn) => {
        let marker = '';
        do {
          const page = await conn.client(PortService).listPorts({ nodeId: o.node ?? '', limit: 1000, marker });
          all.push(...page.ports);
          marker = page.nextMarker;
        } while (marker !== '');
      });
      if (g.json) printJson(all.map((p) => messageJson(PortSchema, p)));
      else
        process.stdout.write(
          table(
            ['UUID', 'Node', 'MAC'],
            all.map((p) => [p.uuid, p.nodeUuid, p.mac]),
          ) + '\n',
        );
    });

  port
    .command('delete <id>')
    .description('delete a port by uuid or MAC')
    .action(async (id: string) => {
      const g = globals();
      await withApi(g, (conn) => conn.client(PortService).deletePort({ id }));
      printDeleted(g.json, 'port', id);
    });
}
