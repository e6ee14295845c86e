/** bmctl port ...: the seed's baremetal-interface-add/-list/-remove. */
import type { Command } from 'commander';
import { PortSchema, PortService, type Port } from '../../proto/gen/bm/v1/port_pb.js';
import { apiConnection } from './connection.ts';
import { messageJson, printDeleted, printJson, table } from './output.ts';
import type { GlobalOptions } from './main.ts';

export function registerPortCommands(program: Command, globals: () => GlobalOptions): void {
  const port = program.command('port').description('network interfaces (MACs) of nodes');

  port
    .command('add <node> <mac>')
    .description('add a MAC to a node')
    .action(async (node: string, mac: string) => {
      const g = globals();
      const conn = apiConnection(g);
      try {
        const p = await conn.client(PortService).createPort({ nodeId: node, mac });
        if (g.json) printJson(messageJson(PortSchema, p));
        else process.stdout.write(table(['UUID', 'Node', 'MAC'], [[p.uuid, p.nodeUuid, p.mac]]) + '\n');
      } finally {
        conn.close();
      }
    });

  port
    .command('list')
    .description('list ports')
    .option('--node <node>', 'only this node\'s ports')
    .action(async (o: { node?: string }) => {
      const g = globals();
      const conn = apiConnection(g);
      const all: Port[] = [];
      try {
        let marker = '';
        do {
          const page = await conn.client(PortService).listPorts({ nodeId: o.node ?? '', limit: 1000, marker });
          all.push(...page.ports);
          marker = page.nextMarker;
        } while (marker !== '');
      } finally {
        conn.close();
      }
      if (g.json) printJson(all.map((p) => messageJson(PortSchema, p)));
      else process.stdout.write(table(['UUID', 'Node', 'MAC'], all.map((p) => [p.uuid, p.nodeUuid, p.mac])) + '\n');
    });

  port
    .command('delete <id>')
    .description('delete a port by uuid or MAC')
    .action(async (id: string) => {
      const g = globals();
      const conn = apiConnection(g);
      try {
        await conn.client(PortService).deletePort({ id });
        printDeleted(g.json, 'port', id);
      } finally {
        conn.close();
      }
    });
}
