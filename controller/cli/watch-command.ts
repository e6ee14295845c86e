/** bmctl watch: live node events until interrupted. */
import type { Command } from 'commander';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { EventSchema, EventService } from '../../proto/gen/bm/v1/event_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { withApi } from './connection.ts';
import { messageJson } from './output.ts';
import type { Globals } from './options.ts';

export function registerWatchCommand(program: Command, globals: Globals): void {
  program
    .command('watch')
    .description('print node events as they happen')
    .option('--node <id>', 'only this node (uuid or name)')
    .action(async (o: { node?: string }) => {
      const g = globals();
      const abort = new AbortController();
      process.once('SIGINT', () => abort.abort());
      process.once('SIGTERM', () => abort.abort());
      await withApi(g, async (conn) => {
        try {
          const nodeUuid = o.node ? (await conn.client(NodeService).getNode({ id: o.node })).uuid : '';
          for await (const e of conn.client(EventService).watch({ nodeUuid }, { signal: abort.signal })) {
            if (g.json) process.stdout.write(JSON.stringify(messageJson(EventSchema, e)) + '\n');
            else {
              const when = e.time ? timestampDate(e.time).toISOString() : '';
              const extra = Object.entries(e.details)
                .map(([k, v]) => `${k}=${v}`)
                .join(' ');
              process.stdout.write(
                `${when} ${e.nodeUuid} ${e.type}${e.provisionState ? ` state=${e.provisionState}` : ''}${e.powerState ? ` power=${e.powerState}` : ''}${e.message ? ` ${e.message}` : ''}${extra ? ` ${extra}` : ''}\n`,
              );
            }
          }
        } catch (err) {
          if (!abort.signal.aborted) throw err;
        }
      });
    });
}
