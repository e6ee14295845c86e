/** bmctl node power|bootdev|manage|provide|inspect|maintenance-on|maintenance-off. */
import type { Command } from 'commander';
import { NodeSchema, NodeService, type Node } from '../../proto/gen/bm/v1/node_pb.js';
import { FAILED_STATES, isTransientState } from '../conductor/index.ts';
import { withApi } from './connection.ts';
import { CliUsageError } from './errors.ts';
import { messageJson, printJson } from './output.ts';
import type { GlobalOptions, Globals } from './options.ts';

const POWER_VERBS: Readonly<Record<string, string>> = { on: 'on', off: 'off', cycle: 'reboot', reboot: 'reboot', 'soft-off': 'soft-off' };

function printNodeState(g: GlobalOptions, n: Node): void {
  if (g.json) printJson(messageJson(NodeSchema, n));
  else
    process.stdout.write(
      `${n.uuid} ${n.name ? `(${n.name}) ` : ''}provision_state=${n.provisionState} power=${n.powerState}${n.lastError ? ` last_error="${n.lastError}"` : ''}\n`,
    );
}

export function registerNodePowerCommands(node: Command, globals: Globals): void {
  node
    .command('power <action> <id>')
    .description('power on|off|cycle|soft-off|status a node through its BMC')
    .option('--wait', 'return once the node reached the state (the default for on/off/cycle)')
    .action(async (action: string, id: string) => {
      const g = globals();
      await withApi(g, async (conn) => {
        const nodes = conn.client(NodeService);
        if (action === 'status') {
          const r = await nodes.getPowerState({ id });
          if (g.json) printJson({ id, powerState: r.powerState });
          else process.stdout.write(`Chassis Power is ${r.powerState}\n`);
          return;
        }
        const target = POWER_VERBS[action];
        if (!target) throw new CliUsageError(`power takes on, off, cycle, soft-off or status, not "${action}"`);
        const n = await nodes.setPowerState({ id, target }, { timeoutMs: 120_000 });
        printNodeState(g, n);
        if (n.lastError && n.powerState !== (target === 'on' || target === 'reboot' ? 'on' : 'off')) process.exitCode = 1;
      });
    });

  node
    .command('bootdev <id> <device>')
    .description('set the next boot device: pxe or disk')
    .option('--persistent', 'keep it for every boot, not just the next one', false)
    .option('--uefi', 'EFI boot (default: legacy BIOS)', false)
    .action(async (id: string, device: string, o: { persistent: boolean; uefi: boolean }) => {
      const g = globals();
      const r = await withApi(g, (conn) => conn.client(NodeService).setBootDevice({ id, device, persistent: o.persistent, uefi: o.uefi }));
      if (g.json) printJson({ id, device: r.device, persistent: r.persistent, uefi: r.uefi });
      else process.stdout.write(`boot device: ${r.device}${r.persistent ? ' (persistent)' : ' (next boot)'}${r.uefi ? ' uefi' : ''}\n`);
    });

  for (const verb of ['manage', 'provide', 'inspect'] as const) {
    node
      .command(`${verb} <id>`)
      .description(
        verb === 'manage'
          ? 'verify the BMC credentials: enroll -> verifying -> manageable (or verify-failed)'
          : `start ${verb === 'provide' ? 'cleaning towards available' : 'hardware inspection'}`,
      )
      .option('--wait', 'wait until the node leaves the transient state', false)
      .option('--timeout <s>', 'give up waiting after this many seconds', '300')
      .action(async (id: string, o: { wait: boolean; timeout: string }) => {
        const g = globals();
        const n = await withApi(g, async (conn) => {
          const nodes = conn.client(NodeService);
          let n = await nodes.provision({ id, verb });
          const deadline = Date.now() + Number(o.timeout) * 1000;
          while (o.wait && isTransientState(n.provisionState) && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 250));
            n = await nodes.getNode({ id: n.uuid });
          }
          return n;
        });
        printNodeState(g, n);
        if ((FAILED_STATES as readonly string[]).includes(n.provisionState)) process.exitCode = 1;
      });
  }

  node
    .command('maintenance-on <id>')
    .description('put a node in maintenance (the conductor leaves it alone)')
    .option('--reason <text>', 'why, for the next operator', '')
    .action(async (id: string, o: { reason: string }) => {
      const g = globals();
      printNodeState(
        g,
        await withApi(g, (conn) => conn.client(NodeService).updateNode({ id, maintenance: true, maintenanceReason: o.reason })),
      );
    });

  node
    .command('maintenance-off <id>')
    .description('take a node out of maintenance')
    .action(async (id: string) => {
      const g = globals();
      printNodeState(g, await withApi(g, (conn) => conn.client(NodeService).updateNode({ id, maintenance: false })));
    });
}
