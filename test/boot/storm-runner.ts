/**
 * Runs the PXE storm client as a program, so a bench can run it inside a
 * network namespace: `node test/boot/storm-runner.ts JSON` (StormOptions),
 * prints one JSON line with the StormResult (without the lease list).
 */
import { runStorm, type StormOptions } from './storm-client.ts';

const options = JSON.parse(process.argv[2] ?? '{}') as StormOptions;
const result = await runStorm(options);
const { leases, ...summary } = result;
process.stdout.write(JSON.stringify({ ...summary, leaseCount: leases.length, unleased: summary.unleased.slice(0, 20) }) + '\n');
