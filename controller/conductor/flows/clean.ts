/**
 * Cleaning (after `provide`, and after an instance is deleted): boot the
 * ramdisk, have the agent erase the disk, power off. The node then becomes
 * `available`; a failure leaves it in clean-failed, in maintenance.
 */
import type { AgentBoot } from '../agent-boot.ts';
import type { TaskContext } from '../task.ts';

export type EraseMode = 'metadata' | 'full';

export async function cleanSteps(boot: AgentBoot, ctx: TaskContext, mode: EraseMode): Promise<void> {
  const since = await boot.bootRamdisk(ctx, 'clean');
  const agent = await boot.waitForAgent(ctx, since);
  ctx.publish('clean.erasing', { mode });
  try {
    await boot.withAgent(agent, (a) => a.client.erase({ mode }, { timeoutMs: 6 * 3600_000 }));
  } finally {
    boot.closeAgent(agent);
  }
  ctx.publish('clean.erased', { mode });
  await boot.powerOff(ctx);
}
