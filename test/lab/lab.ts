/**
 * The virtual lab: a real controller on its own database, example nodes
 * enrolled through the API with fake BMC addresses, and `bmctl node list`.
 * It keeps running for you to try bmctl against it until Ctrl-C, unless
 * --once is given. (Power, boot and deploy join the lab with their issues.)
 */
import { parseArgs } from 'node:util';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect } from '../../proto/rpc/index.ts';
import { dropDatabase } from '../../db/migrate.ts';
import { runBmctl, startControllerProcess } from '../support/controller-process.ts';

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '4' }, once: { type: 'boolean', default: false } } });
const count = Number(values.nodes);
if (!Number.isInteger(count) || count < 1 || count > 10_000) {
  process.stderr.write(`lab: --nodes must be a whole number from 1 to 10000, got ${values.nodes}\n`);
  process.exit(2);
}

const say = (m: string): void => void process.stdout.write(`[lab] ${m}\n`);
say('starting a controller on its own database');
const labDb = process.env.BM_LAB_DATABASE_URL ?? 'mysql://root@127.0.0.1:3306/bm_lab';
// The lab database is the lab's alone: a run killed earlier may have left one behind.
await dropDatabase(labDb);
const ctl = await startControllerProcess({ databaseUrl: labDb, logLevel: 'info' });
let stopping = false;
const stop = async (code: number): Promise<never> => {
  if (!stopping) {
    stopping = true;
    say('stopping the controller');
    await ctl.stop();
  }
  process.exit(code);
};
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

try {
  const conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
  const nodes = conn.client(NodeService);
  say(`enrolling ${count} example node(s) with fake BMC addresses (192.0.2.0/24, TEST-NET-1: nothing is sent there)`);
  for (let i = 1; i <= count; i++) {
    const hex = i.toString(16).padStart(4, '0');
    await nodes.createNode({
      name: `lab-node-${String(i).padStart(3, '0')}`,
      cpus: 8 * (1 + (i % 4)),
      memoryMb: 16384 * (1 + (i % 2)),
      localGb: 480,
      cpuArch: 'x86_64',
      pmAddress: `192.0.2.${(i % 250) + 1}`,
      pmPort: 623,
      pmUser: 'admin',
      pmPassword: `lab-${hex}-secret`,
      mac: `52:54:00:00:${hex.slice(0, 2)}:${hex.slice(2)}`,
    });
  }
  conn.close();
  const env = { BM_URL: ctl.url, BM_TOKEN: ctl.token };
  const list = await runBmctl(['node', 'list'], env);
  process.stdout.write(list.stdout + list.stderr);
  if (list.code !== 0) await stop(1);
  if (values.once) await stop(0);
  say('the controller keeps running; in another shell:');
  say(`  export BM_URL=${ctl.url} BM_TOKEN=${ctl.token}`);
  say('  bin/bmctl node list; bin/bmctl watch; bin/bmctl node create --help');
  say('Ctrl-C stops it and drops the lab database.');
} catch (err) {
  process.stderr.write(`lab: ${err instanceof Error ? err.message : String(err)}\n`);
  await stop(1);
}
