/**
 * In-band Reboot and PowerOff: the reply goes out first, then the configured
 * command runs (`reboot -f` / `poweroff -f` in the ramdisk, where nothing is
 * left to shut down cleanly; tests configure a harmless one).
 */
import { execFile } from 'node:child_process';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { PowerResponseSchema } from '../../proto/gen/bm/agent/v1/agent_pb.js';
import { AgentError } from '../errors.ts';
import type { AgentContext } from './context.ts';

/** Long enough for the reply to leave; the command itself is not waited for. */
const REPLY_GRACE_MS = 200;

function runLater(ctx: AgentContext, what: string, argv: readonly string[]): void {
  const [file, ...args] = argv;
  if (!file) throw new AgentError('failed-precondition', `no ${what} command is configured`);
  setTimeout(() => {
    ctx.config.log(`${what}: running the configured command`, { command: file });
    execFile(file, args, (error) => {
      if (error) ctx.config.log(`${what} command failed`, { command: file, error: error.message });
    });
  }, REPLY_GRACE_MS);
}

export function powerHandlers(ctx: AgentContext): {
  reboot: () => MessageInitShape<typeof PowerResponseSchema>;
  powerOff: () => MessageInitShape<typeof PowerResponseSchema>;
} {
  return {
    reboot: () => {
      runLater(ctx, 'reboot', ctx.config.rebootCommand);
      return {};
    },
    powerOff: () => {
      runLater(ctx, 'power-off', ctx.config.powerOffCommand);
      return {};
    },
  };
}
