/**
 * Where bmctl takes a BMC password from, never the command line by choice:
 * argv is readable by every user in /proc/<pid>/cmdline (`ps`) and lands in
 * shell history. In order: --pm-password-stdin (a pipe, or a prompt without
 * echo when stdin is a terminal), BM_PM_PASSWORD, a prompt on a terminal when
 * the command needs one. --pm-password still works, with a warning.
 */
import { CliUsageError } from './errors.ts';

export const PM_PASSWORD_ENV = 'BM_PM_PASSWORD';

/** IPMI 2.0 passwords are at most 20 bytes; anything far beyond is not a password. */
const MAX_STDIN_BYTES = 4096;

export interface PasswordFlags {
  readonly pmPassword?: string;
  readonly pmPasswordStdin?: boolean;
}

export interface SecretIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdin: NodeJS.ReadStream;
  readonly stderr: NodeJS.WriteStream;
}

const processIo = (): SecretIo => ({ env: process.env, stdin: process.stdin, stderr: process.stderr });

/**
 * The password a command was given, or undefined when none was and none is
 * required (`node update` without a password change).
 */
export async function pmPasswordFrom(flags: PasswordFlags, required: boolean, io: SecretIo = processIo()): Promise<string | undefined> {
  if (flags.pmPasswordStdin && flags.pmPassword !== undefined)
    throw new CliUsageError('give the BMC password one way: --pm-password-stdin or --pm-password, not both');
  if (flags.pmPasswordStdin) return io.stdin.isTTY ? promptHidden('BMC password: ', io) : readStdinSecret(io.stdin);
  if (flags.pmPassword !== undefined) {
    io.stderr.write(
      `bmctl: warning: --pm-password shows the password in the process list and shell history; set ${PM_PASSWORD_ENV} or use --pm-password-stdin\n`,
    );
    return flags.pmPassword;
  }
  const fromEnv = io.env[PM_PASSWORD_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (!required) return undefined;
  if (io.stdin.isTTY) return promptHidden('BMC password: ', io);
  throw new CliUsageError(
    `a BMC password is required: set ${PM_PASSWORD_ENV}, pipe it to --pm-password-stdin, or run on a terminal to be asked`,
  );
}

async function readStdinSecret(stdin: NodeJS.ReadStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buf.length;
    if (size > MAX_STDIN_BYTES)
      throw new CliUsageError(`--pm-password-stdin: more than ${MAX_STDIN_BYTES} bytes on stdin; expected one password`);
    chunks.push(buf);
  }
  // One trailing line end is how `echo` and here-strings end a line, not part of the password.
  const value = Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (value === '') throw new CliUsageError('--pm-password-stdin: stdin was empty');
  return value;
}

/** Reads a line from the terminal in raw mode, echoing nothing. */
function promptHidden(question: string, io: SecretIo): Promise<string> {
  const { stdin, stderr } = io;
  stderr.write(question);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      stderr.write('\n');
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') {
          finish();
          if (value === '') reject(new CliUsageError('no BMC password given'));
          else resolve(value);
          return;
        }
        if (ch === '\u0003' || ch === '\u0004') {
          finish();
          reject(new CliUsageError('cancelled'));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}
