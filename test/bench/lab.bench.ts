/**
 * The lab at fleet scale: 50 virtual machines (BENCH_SCALE scales the count),
 * enrolled, verified and cleaned through the API, then 50 instances booted at
 * once. The peer is one instance booted alone on the same lab in the same
 * run: a deploy that waits on nothing but itself. Figures: the time from the
 * first boot call to all ACTIVE (each instance timed by its instance.active
 * event) against the single time, p50/p95 per instance, the controller's
 * peak RSS (VmHWM, overall and per phase) and CPU time, and the CPU of the
 * batch's agents and of this process, which share the host's cores.
 */
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InstanceService } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, tlsCredentials } from '../../proto/rpc/index.ts';
import {
  bootAll,
  createFlavor,
  enroll,
  provisionAll,
  startLabFleet,
  uniqueDatabaseUrl,
  uniqueNatsPrefix,
  uploadImage,
  type LabFleet,
  cpuSecondsOf,
} from '../../controller/lab/index.ts';
import { goal, type BenchContext, type BenchReport } from './harness.ts';

const FULL = 50;

async function procStatusKiB(pid: number, field: string): Promise<number | null> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

/**
 * Starts a new peak: writing 5 to clear_refs resets VmHWM to the current RSS
 * (Linux >= 4.0), so each phase's peak is its own. False when it could not.
 */
async function resetPeak(pid: number): Promise<boolean> {
  return writeFile(`/proc/${pid}/clear_refs`, '5').then(
    () => true,
    () => false,
  );
}

const toMiB = (kib: number | null): number | null => (kib === null ? null : Math.round(kib / 102.4) / 10);

const delta = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : Math.round((b - a) * 10) / 10);

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const round1 = (ms: number): number => Math.round(ms / 100) / 10;

export default async function labBench(ctx: BenchContext): Promise<BenchReport> {
  const count = Math.max(2, Math.round(FULL * ctx.scale));
  let fleet: LabFleet | null = null;
  try {
    ctx.log(`starting a lab of ${count} machines`);
    fleet = await startLabFleet({
      nodes: count,
      dir: path.join(os.tmpdir(), `bm-labbench-${process.pid}`),
      databaseUrl: uniqueDatabaseUrl('bm_labbench'),
      natsPrefix: uniqueNatsPrefix(),
      // A machine's own trouble (a ramdisk that would not start) is worth a line; its routine boots are not.
      say: (m) => {
        if (/failed|did not|retrying/.test(m)) ctx.log(m);
      },
    });
    const ctl = fleet.controller;
    /** Each phase's own peak RSS (MiB): where the controller's memory goes, not just how high it got. */
    const phasePeakMiB: Record<string, number | null> = {};
    // The first phase's peak counts from the controller's start.
    let peaksReset = true;
    const endPhase = async (name: string): Promise<void> => {
      phasePeakMiB[name] = peaksReset ? toMiB(await procStatusKiB(ctl.pid, 'VmHWM')) : null;
      peaksReset = await resetPeak(ctl.pid);
    };
    const conn = connect(ctl.url, {
      metadata: { authorization: `Bearer ${ctl.token}` },
      ...(ctl.ca ? { credentials: tlsCredentials(await readFile(ctl.ca)) } : {}),
    });
    try {
      await uploadImage(conn, fleet.image);
      await endPhase('startup_upload');
      const machines = fleet.describe();
      await enroll(conn, machines);
      const names = machines.map((m) => m.name);
      const t0 = performance.now();
      await provisionAll(conn, names, 'manage', 'manageable', 120_000);
      const manageS = (performance.now() - t0) / 1000;
      await endPhase('enroll_manage');
      const t1 = performance.now();
      await provisionAll(conn, names, 'provide', 'available', 600_000);
      const provideS = (performance.now() - t1) / 1000;
      await endPhase('provide');
      await createFlavor(conn);
      ctx.log(`managed in ${manageS.toFixed(1)} s, cleaned in ${provideS.toFixed(1)} s; one instance alone`);

      // Events time the instances (operator.ts); the list, which reads every instance's node, only catches an ERROR.
      const [single] = await bootAll(conn, ['bench-single'], { timeoutMs: 300_000, pollMs: 5000 });
      if (single!.instance.state !== 'ACTIVE')
        throw new Error(`the single instance ended in ${single!.instance.state}: ${single!.instance.lastError}`);
      // Back to the pool, so the batch has every machine.
      await conn.client(InstanceService).deleteInstance({ id: single!.instance.uuid });
      const nodes = conn.client(NodeService);
      for (const deadline = Date.now() + 300_000; ; ) {
        const n = await nodes.getNode({ id: single!.instance.nodeUuid });
        if (n.provisionState === 'available' && n.instanceUuid === '') break;
        if (Date.now() > deadline) throw new Error(`the single instance's node is ${n.provisionState}, not available again`);
        await new Promise((r) => setTimeout(r, 200));
      }

      await endPhase('single');
      ctx.log(`${count} instances at once`);
      const peakBeforeKiB = Math.max(...Object.values(phasePeakMiB).map((m) => (m ?? 0) * 1024));
      const agentsRunBefore = fleet.machines.map((m) => m.agentsRun.length);
      const cpuBefore = cpuSecondsOf(ctl.pid);
      const benchBefore = cpuSecondsOf('self');
      const agentsBefore = cpuSecondsOf('self', 'reaped-children');
      const batch = await bootAll(
        conn,
        machines.map((_, i) => `bench-${String(i + 1).padStart(3, '0')}`),
        { timeoutMs: 900_000, pollMs: 5000 },
      );
      const cpuAfter = cpuSecondsOf(ctl.pid);
      const benchAfter = cpuSecondsOf('self');
      // The agents end when their machine boots from disk; by the last ACTIVE all but a few are reaped.
      await new Promise((r) => setTimeout(r, 1000));
      const agentsAfter = cpuSecondsOf('self', 'reaped-children');
      const failed = batch.filter((b) => b.instance.state !== 'ACTIVE');
      const times = batch.map((b) => b.ms).sort((a, b) => a - b);
      const allMs = times[times.length - 1]!;
      await endPhase('batch');
      const peakMiB = Object.values(phasePeakMiB).some((m) => m === null)
        ? toMiB(await procStatusKiB(ctl.pid, 'VmHWM'))
        : Math.max(...Object.values(phasePeakMiB).map((m) => m ?? 0));
      // The batch's agents (started by the batch's network boots): their start-up to listening, and their whole life.
      const batchAgents = fleet.machines.flatMap((m, i) => m.agentsRun.slice(agentsRunBefore[i]));
      // Each agent's life in spans: start-up to listening, then to its image write's start (finding the
      // controller, waiting to be called), the write, and the rest (config drive, relaying, heartbeats, exit).
      const spans = { startup: 0, to_write: 0, write: 0, after_write: 0, life: 0 };
      let unmeasured = 0;
      for (const a of batchAgents) {
        // One still running (its machine not yet rebooted) counts what it has used so far.
        const life = a.cpu.atStop ?? cpuSecondsOf(a.pid);
        const { atListen, atWriteStarted, atWriteFinished } = a.cpu;
        if (life === null || atListen === null || atWriteStarted === null || atWriteFinished === null) {
          unmeasured++;
          continue;
        }
        spans.startup += atListen;
        spans.to_write += atWriteStarted - atListen;
        spans.write += atWriteFinished - atWriteStarted;
        spans.after_write += life - atWriteFinished;
        spans.life += life;
      }
      const agentCpu = Object.fromEntries(Object.entries(spans).map(([k, v]) => [k, Math.round(v * 10) / 10]));
      // Streams a relay agent fed (rack fan-out); the controller fed the rest.
      const relayed = batchAgents.reduce((n, a) => n + a.output().split('"msg":"relay started"').length - 1, 0);
      const ratio = failed.length === 0 ? allMs / single!.ms : null;
      return {
        results: {
          machines: count,
          manage_all_s: round1(manageS * 1000),
          provide_all_s: round1(provideS * 1000),
          single_instance_s: round1(single!.ms),
          all_active_s: round1(allMs),
          all_vs_single: ratio === null ? null : Math.round(ratio * 100) / 100,
          per_instance_p50_s: round1(percentile(times, 50)),
          per_instance_p95_s: round1(percentile(times, 95)),
          failed: failed.length,
          controller_peak_rss_mib: peakMiB,
          // The peak before the batch (start-up, upload, enroll, cleaning, the single deploy): what the 50 streams added is the difference.
          controller_peak_rss_before_batch_mib: toMiB(peakBeforeKiB),
          // Per phase (VmHWM reset between phases): start-up and upload, enroll_manage, provide, single, batch.
          controller_peak_rss_by_phase_mib: phasePeakMiB,
          controller_cpu_s_during_batch: delta(cpuBefore, cpuAfter),
          // Each virtual machine's ramdisk is a Node process on this machine's shared cores, where a real one has its own CPU.
          lab_agents_cpu_s_during_batch: delta(agentsBefore, agentsAfter),
          // The batch's agents, read from /proc as each was stopped: start-up (to listening) and whole life.
          batch_agents: batchAgents.length,
          batch_streams_relayed: relayed,
          // CPU-s summed over the batch's agents, by span of their life (read from /proc as their log said so).
          batch_agents_cpu_s: agentCpu,
          batch_agents_unmeasured: unmeasured,
          // This process: the virtual BMCs, the machines' firmware (iPXE fetches) and the API polling.
          lab_process_cpu_s_during_batch: delta(benchBefore, benchAfter),
          cores: os.cpus().length,
        },
        goals: [
          goal(
            `${count} at once vs one alone (time to all ACTIVE)`,
            ratio,
            '<=',
            3,
            failed.length > 0 ? `${failed.length} instance(s) ended in ERROR` : undefined,
          ),
          goal('controller peak RSS (MiB)', peakMiB, '<=', 512, peakMiB === null ? `no /proc/${ctl.pid}/status` : undefined),
        ],
      };
    } finally {
      conn.close();
    }
  } finally {
    // LAB_CONTROLLER_LOG=FILE keeps what the controller printed (with LAB_CONTROLLER_NODE_ARGS=--trace-gc, its GCs).
    const logTo = process.env.LAB_CONTROLLER_LOG;
    if (logTo && fleet) await writeFile(logTo, fleet.controller.logs()).catch(() => undefined);
    await fleet?.stop();
  }
}
