/** bmctl db sync, controller start, token create: the commands that run on a controller host. */
import type { Command } from 'commander';
import { hashToken, newToken } from '../auth/tokens.ts';
import { printJson } from './output.ts';
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
      const [{ loadConfig }, { syncDatabase }, { redactDatabaseUrl }] = await Promise.all([import('../config/load.ts'), import('../../db/migrate.ts'), import('../../db/connect.ts')]);
      const { config } = await loadConfig(o.config ?? process.env.BM_CONFIG);
      const result = await syncDatabase(config.database.url);
      if (globals().json) printJson(result);
      else process.stdout.write(`database ${result.database} at ${redactDatabaseUrl(config.database.url)}: ${result.created ? 'created, ' : ''}${result.applied} migration(s) applied\n`);
    });

  program
    .command('controller')
    .description('the controller process')
    .command('start')
    .description('serve the API until SIGTERM/SIGINT')
    .option('--config <file>', 'bm.toml (default: BM_CONFIG)')
    .action(async (o: { config?: string }) => {
      const [{ loadConfig }, { createLogger }, { startController }] = await Promise.all([import('../config/load.ts'), import('../log/logger.ts'), import('../server/controller.ts')]);
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

  program
    .command('token')
    .description('API tokens')
    .command('create')
    .description('make a new admin token; put its hash in api.tokens, give the token to the user')
    .action(() => {
      const token = newToken();
      const hash = hashToken(token);
      if (globals().json) printJson({ token, hash });
      else process.stdout.write(`token: ${token}\nconfig line: tokens = ["${hash}"]\n`);
    });
}
