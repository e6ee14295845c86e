/**
 * The lab process that `bmctl lab up` starts in the background (its own
 * session and process group, so it outlives the bmctl that started it):
 *   node controller/lab/lab-process.ts --nodes N --state-dir DIR --database URL
 * It starts the fleet (controller + virtual machines), writes the lab state
 * once everything serves, and keeps the machines running until SIGTERM
 * (`bmctl lab down`), when it stops them and the controller, drops the lab's
 * database and removes its state. With --teardown it only cleans up after a
 * lab process that died: drops the recorded database, removes the work
 * directory and the state.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { dropDatabase } from '../../db/index.ts';
import { startLabFleet, type LabFleet } from './fleet.ts';
import { readLabState, removeLabState, writeLabState } from './lab-state.ts';

const say = (m: string): void => void process.stdout.write(`[lab] ${new Date().toISOString()} ${m}\n`);

async function teardown(stateDir: string): Promise<void> {
  const state = await readLabState(stateDir);
  if (!state) return;
  await dropDatabase(state.databaseUrl);
  await rm(state.dir, { recursive: true, force: true });
  await removeLabState(stateDir);
  say(`cleaned up after the lab: database ${new URL(state.databaseUrl).pathname.slice(1)} dropped`);
}

async function serve(nodes: number, stateDir: string, databaseServer: string): Promise<void> {
  const suffix = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const databaseUrl = `${databaseServer.replace(/\/[^/]*$/, '/')}bm_lab_${suffix}`;
  const dir = path.join(os.tmpdir(), `bm-lab-${suffix}`);
  let fleet: LabFleet | null = null;
  let stopping = false;
  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    say('stopping the machines and the controller, dropping the lab database');
    await fleet?.stop().catch((err: unknown) => say(`stop: ${err instanceof Error ? err.message : String(err)}`));
    await removeLabState(stateDir);
    process.exit(code);
  };
  process.on('SIGTERM', () => void stop(0));
  process.on('SIGINT', () => void stop(0));
  try {
    fleet = await startLabFleet({ nodes, dir, databaseUrl, natsPrefix: `bm_lab_${suffix}`, say });
    await writeLabState(stateDir, {
      pid: process.pid,
      url: fleet.controller.url,
      token: fleet.controller.token,
      ...(fleet.controller.ca ? { ca: fleet.controller.ca } : {}),
      databaseUrl,
      natsPrefix: fleet.controller.natsPrefix,
      controllerPid: fleet.controller.pid,
      dir,
      image: fleet.image,
      machines: fleet.describe(),
    });
    say(`up: controller ${fleet.controller.url} (pid ${fleet.controller.pid}), ${nodes} machine(s)`);
  } catch (err) {
    say(`failed: ${err instanceof Error ? err.message : String(err)}`);
    await stop(1);
  }
}

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '4' },
    'state-dir': { type: 'string' },
    database: { type: 'string', default: 'mysql://root@127.0.0.1:3306/' },
    teardown: { type: 'boolean', default: false },
  },
});
const stateDir = values['state-dir'];
if (!stateDir) {
  process.stderr.write('lab-process: --state-dir is required\n');
  process.exit(2);
}
if (values.teardown) await teardown(stateDir);
else await serve(Number(values.nodes), stateDir, values.database);
