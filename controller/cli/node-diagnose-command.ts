/** bmctl node diagnose: the seed's bug-report script, as one command; secrets come back masked. */
import type { Command } from 'commander';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { withApi } from './connection.ts';
import type { Globals } from './options.ts';

export function registerNodeDiagnoseCommand(node: Command, globals: Globals): void {
  node
    .command('diagnose <id>')
    .description(
      'everything a bug report needs about one node (node, instance, owner, ports, leases, boot script, recent events), secrets masked',
    )
    .action(async (id: string) => {
      const g = globals();
      const { reportJson } = await withApi(g, (conn) => conn.client(NodeService).diagnose({ id }));
      process.stdout.write(JSON.stringify(JSON.parse(reportJson), null, 2) + '\n');
    });
}
