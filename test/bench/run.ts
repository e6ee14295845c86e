/**
 * `npm run bench [-- NAME ...]`: runs the named benchmarks (all when none is
 * named), writes bench-results/NAME.json and a table, and prints each
 * benchmark's one-line JSON summary as the last line of its output.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { prepareSuiteTls } from '../../controller/lab/suite-tls.ts';
import type { Bench, BenchReport } from './harness.ts';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const resultsDir = path.resolve(benchDir, '../../bench-results');

async function available(): Promise<string[]> {
  const files = await readdir(benchDir);
  return files
    .filter((f) => f.endsWith('.bench.ts'))
    .map((f) => f.replace(/\.bench\.ts$/, ''))
    .sort();
}

function table(name: string, report: BenchReport): string {
  const lines = [`# ${name}`, '', '| figure | value |', '| --- | --- |'];
  for (const [key, value] of Object.entries(report.results)) lines.push(`| ${key} | ${JSON.stringify(value)} |`);
  lines.push('', '| goal | value | target | met |', '| --- | --- | --- | --- |');
  for (const g of report.goals) {
    lines.push(`| ${g.name} | ${g.value ?? 'n/a'} | ${g.op} ${g.target} | ${g.met ? 'yes' : 'no'}${g.why ? ` (${g.why})` : ''} |`);
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const known = await available();
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const unknown = wanted.filter((w) => !known.includes(w));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark(s): ${unknown.join(', ')}; available: ${known.join(', ')}\n`);
    process.exit(2);
  }
  const scale = Number(process.env.BENCH_SCALE ?? '1');
  if (!(scale > 0)) throw new Error(`BENCH_SCALE must be a positive number, got ${process.env.BENCH_SCALE}`);
  await mkdir(resultsDir, { recursive: true });
  // As in the tests: the controllers benchmarks start serve TLS with the suite's CA, which bmctl finds in BM_CA.
  await prepareSuiteTls();
  let failed = false;
  for (const name of wanted.length > 0 ? wanted : known) {
    const mod = (await import(pathToFileURL(path.join(benchDir, `${name}.bench.ts`)).href)) as { default: Bench };
    const ctx = { scale, log: (m: string) => process.stderr.write(`[${name}] ${m}\n`) };
    let report: BenchReport;
    try {
      report = await mod.default(ctx);
    } catch (err) {
      failed = true;
      report = { results: { error: err instanceof Error ? err.message : String(err) }, goals: [] };
    }
    const summary = { bench: name, scale, results: report.results, goals: report.goals };
    await writeFile(path.join(resultsDir, `${name}.json`), JSON.stringify(summary, null, 2) + '\n');
    await writeFile(path.join(resultsDir, `${name}.md`), table(name, report));
    process.stderr.write(table(name, report));
    process.stdout.write(JSON.stringify(summary) + '\n');
  }
  process.exit(failed ? 1 : 0);
}

await main();
