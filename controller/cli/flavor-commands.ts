/** bmctl flavor ...: the seed's `nova flavor-create` and `nova flavor-key`. */
import type { Command } from 'commander';
import { FlavorSchema, FlavorService, type Flavor } from '../../proto/gen/bm/v1/flavor_pb.js';
import { withApi } from './connection.ts';
import { CliUsageError } from './errors.ts';
import type { GlobalOptions } from './options.ts';
import { messageJson, printDeleted, printJson, printMessage, table } from './output.ts';

function whole(name: string): (v: string) => number {
  return (v) => {
    if (!/^\d+$/.test(v)) throw new CliUsageError(`--${name} must be a whole number, got "${v}"`);
    return Number(v);
  };
}

function flavorRow(f: Flavor): string[] {
  const keys = Object.entries(f.extraSpecs)
    .map(([k, v]) => `${k}=${v}`)
    .sort()
    .join(', ');
  return [f.uuid, f.name, String(f.ramMb), String(f.diskGb), String(f.cpus), keys];
}

export function registerFlavorCommands(program: Command, globals: () => GlobalOptions): void {
  const flavor = program.command('flavor').description('flavors: what tenants boot (hardware minimums and keys)');

  flavor
    .command('create <name>')
    .description('create a flavor')
    .requiredOption('--ram <mb>', 'RAM in MiB', whole('ram'))
    .requiredOption('--disk <gb>', 'local disk in GiB', whole('disk'))
    .requiredOption('--cpus <n>', 'CPU count', whole('cpus'))
    .option('--arch <arch>', 'CPU architecture (the cpu_arch key)', 'x86_64')
    .option('--resource-class <rc>', 'the resource_class key: only nodes of this class fit', '')
    .action(async (name: string, o: { ram: number; disk: number; cpus: number; arch: string; resourceClass: string }) => {
      const g = globals();
      await withApi(g, async (conn) => {
        printMessage(
          g.json,
          FlavorSchema,
          await conn
            .client(FlavorService)
            .createFlavor({ name, ramMb: o.ram, diskGb: o.disk, cpus: o.cpus, cpuArch: o.arch, resourceClass: o.resourceClass }),
        );
      });
    });

  flavor
    .command('key <name> <action> <pairs...>')
    .description(
      'set K=V ... or unset K ...: cpu_arch, resource_class, capabilities:NAME, baremetal:deploy_kernel_id, baremetal:deploy_ramdisk_id',
    )
    .action(async (name: string, action: string, pairs: string[]) => {
      const g = globals();
      await withApi(g, async (conn) => {
        const flavors = conn.client(FlavorService);
        let updated: Flavor;
        if (action === 'set') {
          const keys: Record<string, string> = {};
          for (const p of pairs) {
            const eq = p.indexOf('=');
            if (eq <= 0) throw new CliUsageError(`flavor key set takes KEY=VALUE, got "${p}"`);
            keys[p.slice(0, eq)] = p.slice(eq + 1);
          }
          updated = await flavors.setFlavorKeys({ id: name, keys });
        } else if (action === 'unset') {
          updated = await flavors.unsetFlavorKeys({ id: name, keys: pairs });
        } else throw new CliUsageError(`flavor key takes set or unset, not "${action}"`);
        printMessage(g.json, FlavorSchema, updated);
      });
    });

  flavor
    .command('list')
    .description('list flavors')
    .action(async () => {
      const g = globals();
      await withApi(g, async (conn) => {
        const { flavors } = await conn.client(FlavorService).listFlavors({});
        if (g.json) printJson(flavors.map((f) => messageJson(FlavorSchema, f)));
        else process.stdout.write(table(['UUID', 'Name', 'RAM_MB', 'Disk_GB', 'CPUs', 'Keys'], flavors.map(flavorRow)) + '\n');
      });
    });

  flavor
    .command('show <id>')
    .description('show one flavor by uuid or name')
    .action(async (id: string) => {
      const g = globals();
      await withApi(g, async (conn) => {
        printMessage(g.json, FlavorSchema, await conn.client(FlavorService).getFlavor({ id }));
      });
    });

  flavor
    .command('delete <id>')
    .description('delete a flavor (refused while an instance uses it)')
    .action(async (id: string) => {
      const g = globals();
      await withApi(g, async (conn) => {
        await conn.client(FlavorService).deleteFlavor({ id });
        printDeleted(g.json, 'flavor', id);
      });
    });
}
