/**
 * bmctl: the operator's command line. It talks only to the controller's gRPC
 * API (except `db sync` and `controller start`, which run on a controller host).
 */
import { Command, CommanderError } from 'commander';
import { registerAdminCommands } from './admin-commands.ts';
import { describeError } from './errors.ts';
import { registerFlavorCommands } from './flavor-commands.ts';
import { registerImageCommands } from './image-commands.ts';
import { registerInstanceCommands } from './instance-commands.ts';
import { registerLabCommands } from './lab-commands.ts';
import { registerNodeCommands } from './node-commands.ts';
import { registerPortCommands } from './port-commands.ts';
import { apiUrl, DEFAULT_API_URL, type GlobalOptions } from './options.ts';
import { registerWatchCommand } from './watch-command.ts';

export function buildProgram(): Command {
  const program = new Command('bmctl')
    .description('bare-metal controller CLI')
    .option(
      '--url <url>',
      `controller API, host:port or https://host:port (default: BM_URL, else the saved defaults, else ${DEFAULT_API_URL})`,
    )
    .option('--token <token>', 'bearer token (default: BM_TOKEN, else the saved defaults)')
    .option('--ca <file>', 'PEM CA certificate to verify a TLS controller with (default: BM_CA); implies TLS')
    .option('--json', 'machine-readable output', false)
    .exitOverride()
    .showSuggestionAfterError(true)
    .addHelpText(
      'after',
      "\nSaved defaults: `bmctl lab up` saves its controller's address and token in $XDG_CONFIG_HOME/bmctl/env.json\n" +
        '(~/.config/bmctl/env.json); bmctl uses them only when none of --url, --token, BM_URL and BM_TOKEN is set.\n' +
        '`bmctl lab down` removes them.',
    );
  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  registerAdminCommands(program, globals);
  registerNodeCommands(program, globals);
  registerPortCommands(program, globals);
  registerImageCommands(program, globals);
  registerFlavorCommands(program, globals);
  registerInstanceCommands(program, globals);
  registerWatchCommand(program, globals);
  registerLabCommands(program);
  // Every subcommand accepts the global options after it too (`bmctl node list --json`).
  const addGlobals = (cmd: Command): void => {
    for (const sub of cmd.commands) {
      sub.exitOverride();
      if (sub.commands.length === 0) {
        sub
          .option('--json', 'machine-readable output')
          .option('--url <host:port>', 'controller API')
          .option('--token <token>', 'bearer token')
          .option('--ca <file>', 'CA certificate of a TLS controller');
        sub.hook('preAction', (_this, action) => {
          const o = action.opts<Partial<GlobalOptions>>();
          for (const key of ['json', 'url', 'token', 'ca'] as const) if (o[key] !== undefined) program.setOptionValue(key, o[key]);
        });
      }
      addGlobals(sub);
    }
  };
  addGlobals(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    process.stderr.write(`bmctl: error: ${describeError(err, apiUrl(program.opts<GlobalOptions>()))}\n`);
    return 1;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  // A command may already have set a failing exit code (e.g. manage ending in verify-failed).
  if (code !== 0 || process.exitCode === undefined) process.exitCode = code;
}
