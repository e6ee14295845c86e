/**
 * Enrolling a virtual machine as an operator does: `bmctl node create` with
 * the machine's BMC and MAC (the password through BM_PM_PASSWORD, never on
 * the command line), then the provision verbs with `--wait`.
 */
import { expect } from 'vitest';
import { runBmctl, type VirtualNode } from '../../controller/lab/index.ts';

export interface EnrollOptions {
  readonly name: string;
  readonly cpus: number;
  readonly memoryMb: number;
  /** More `node create` flags (e.g. --resource-class). */
  readonly extra?: readonly string[];
  /** BMC password the virtual BMC expects; default: the machine's own. */
  readonly bmcPassword?: string;
}

type Env = Readonly<Record<string, string>>;

/** `bmctl node create` for `m`; expects it to succeed. */
export async function createNodeWithBmctl(m: VirtualNode, env: Env, o: EnrollOptions): Promise<void> {
  const args = [
    'node',
    'create',
    '--name',
    o.name,
    '--pm-address',
    m.bmc.address,
    '--pm-port',
    String(m.bmc.port),
    '--pm-user',
    'admin',
    '--cpus',
    String(o.cpus),
    '--memory-mb',
    String(o.memoryMb),
    '--disk-gb',
    '1',
    '--mac',
    m.o.mac,
    ...(o.extra ?? []),
  ];
  const created = await runBmctl(args, { ...env, BM_PM_PASSWORD: o.bmcPassword ?? m.o.bmcPassword });
  expect(created.code, created.stderr).toBe(0);
}

/** `bmctl node VERB NAME --wait` for each verb in turn; a failure shows the machine's log. */
export async function provisionWithBmctl(name: string, verbs: readonly string[], env: Env, log: readonly string[] = []): Promise<void> {
  for (const verb of verbs) {
    const r = await runBmctl(['node', verb, name, '--wait', '--timeout', '120'], env, 150_000);
    expect(r.code, `${verb}: ${r.stdout}${r.stderr}\n${log.join('\n')}`).toBe(0);
  }
}
