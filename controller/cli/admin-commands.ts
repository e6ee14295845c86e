/** bmctl db sync, controller start, token create: the commands that run on a controller host. */
import type { Command } from 'commander';
import { hashToken, newToken } from '../auth/index.ts';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { ClusterService, ControllerInfoSchema } from '../../proto/gen/bm/v1/cluster_pb.js';
import { ApiTokenSchema, TokenService } from '../../proto/gen/bm/v1/token_pb.js';
import { withApi } from './connection.ts';
import { messageJson, printDeleted, printJson, table } from './output.ts';
import type { Globals } from './options.ts';

export function registerAdminCommands(program: Command, globals: Globals): void {
  program
    .command('db')
    .description('database schema')
    .command('sync')
    .description('create the database if missing and apply migrations (idempotent)')
    .option('--config <file>', 'bm.toml (default: BM_CONFIG)')
    .action(async (o: { config?: string }) => {
      // Loaded on use: operators' everyday commands need none of the server side.
      const [{ loadConfig }, { syncDatabase }, { redactDatabaseUrl }] = await Promise.all([
        import('../config/index.ts'),
        import('../../db/index.ts'),
        import('../../db/index.ts'),
      ]);
      const { config } = await loadConfig(o.config ?? process.env.BM_CONFIG);
      const result = await syncDatabase(config.database.url);
      if (globals().json) printJson(result);
      else
        process.stdout.write(
          `database ${result.database} at ${redactDatabaseUrl(config.database.url)}: ${result.created ? 'created, ' : ''}${result.applied} migration(s) applied\n`,
        );
    });

  const controller = program.command('controller').description('the controller process, and the cluster of them');
  controller
    .command('list')
    .description('members of the cluster: their groups, last heartbeat, alive or not, and the nodes the hash ring gives each')
    .action(async () => {
      const g = globals();
      const r = await withApi(g, (conn) => conn.client(ClusterService).listControllers({}));
      if (g.json) printJson(r.controllers.map((c) => messageJson(ControllerInfoSchema, c)));
      else {
        const age = (c: (typeof r.controllers)[number]): string =>
          c.heartbeatAt ? `${((Date.now() - timestampDate(c.heartbeatAt).getTime()) / 1000).toFixed(1)} s ago` : '';
        process.stdout.write(
          table(
            ['ID', 'Hostname', 'API', 'Groups', 'Last_Heartbeat', 'Alive', 'Owned_Nodes'],
            r.controllers.map((c) => [
              c.id,
              c.hostname,
              c.apiAddress,
              c.groups.join(','),
              age(c),
              c.alive ? 'yes' : 'no',
              String(c.ownedNodes),
            ]),
          ) + '\n',
        );
      }
    });
  controller
    .command('start')
    .description('serve the API until SIGTERM/SIGINT')
    .option('--config <file>', 'bm.toml (default: BM_CONFIG)')
    .action(async (o: { config?: string }) => {
      const [{ loadConfig }, { createLogger }, { startController }] = await Promise.all([
        import('../config/index.ts'),
        import('../log/index.ts'),
        import('../server/index.ts'),
      ]);
      const loaded = await loadConfig(o.config ?? process.env.BM_CONFIG);
      const log = createLogger(loaded.config.log.level);
      if (loaded.envUnknown.length > 0) log.warn({ variables: loaded.envUnknown }, 'ignored unknown BM_ configuration variables');
      const running = await startController(loaded.config, log);
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          log.info({ signal }, 'stop requested');
          running.stop().then(resolve, resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });

  const token = program.command('token').description('API tokens: bm.toml admin tokens, and project tokens kept by the controller');
  token
    .command('create')
    .description(
      'without --project/--role: a new admin token for bm.toml (api.tokens gets its hash); with them: a project token made through the API (needs an admin token)',
    )
    .option('--project <p>', 'the project the token acts for')
    .option('--role <role>', "admin (the fleet) or member (its project's instances only)")
    .option('--description <text>', 'who or what it is for', '')
    .action(async (o: { project?: string; role?: string; description: string }) => {
      const g = globals();
      if (o.project === undefined && o.role === undefined) {
        const made = newToken();
        const hash = hashToken(made);
        if (g.json) printJson({ token: made, hash });
        else process.stdout.write(`token: ${made}\nconfig line: tokens = ["${hash}"]\n`);
        return;
      }
      const made = await withApi(g, (conn) =>
        conn.client(TokenService).createToken({ project: o.project ?? '', role: o.role ?? 'member', description: o.description }),
      );
      if (g.json) printJson({ token: made.token, ...(made.info ? (messageJson(ApiTokenSchema, made.info) as object) : {}) });
      else
        process.stdout.write(
          `token: ${made.token}\nid: ${made.info?.id} project: ${made.info?.project} role: ${made.info?.role}\n(shown once; the controller keeps only its digest)\n`,
        );
    });
  token
    .command('list')
    .description('list project tokens (never the tokens themselves)')
    .action(async () => {
      const g = globals();
      const { tokens } = await withApi(g, (conn) => conn.client(TokenService).listTokens({}));
      if (g.json) printJson(tokens.map((t) => messageJson(ApiTokenSchema, t)));
      else
        process.stdout.write(
          table(
            ['ID', 'Project', 'Role', 'Description'],
            tokens.map((t) => [t.id, t.project, t.role, t.description]),
          ) + '\n',
        );
    });
  token
    .command('delete <id>')
    .description('revoke a project token by its id (from token list)')
    .action(async (id: string) => {
      const g = globals();
      await withApi(g, (conn) => conn.client(TokenService).deleteToken({ id }));
      printDeleted(g.json, 'token', id);
    });
}
