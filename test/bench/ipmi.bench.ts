/**
 * 1,000 sequential power-status reads against OpenIPMI's ipmi_sim: the native
 * RMCP+ driver (one session, reused) against the ipmitool driver (a process
 * and a session per call), in the same run, on the same simulator.
 *
 * ipmi_sim runs here without a chassis_control program, keeping power inside
 * the simulator: with one, ipmi_sim forks a shell for every power read and
 * both drivers would measure that fork instead of themselves.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BmcTarget, PowerControl } from '../../controller/drivers/power/types.ts';
import { IpmiDriver } from '../../controller/drivers/power/ipmi/driver.ts';
import { SessionPool } from '../../controller/drivers/power/ipmi/pool.ts';
import { IpmitoolDriver } from '../../controller/drivers/power/ipmitool/driver.ts';
import { requireBinary } from '../support/ipmi-sim.ts';
import { goal, peakRssMiB, type BenchContext, type BenchReport } from './harness.ts';
import { freeUdpPort } from '../../controller/lab/index.ts';

async function measure(
  ctx: BenchContext,
  name: string,
  driver: PowerControl,
  calls: number,
): Promise<{ callsPerSecond: number; meanMs: number; p99Ms: number }> {
  // One warm-up call: session set-up (native) is counted apart from the steady state.
  await driver.getPowerState();
  const latencies: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) {
    const t = performance.now();
    const state = await driver.getPowerState();
    if (state !== 'on' && state !== 'off') throw new Error(`${name}: unexpected state ${String(state)}`);
    latencies.push(performance.now() - t);
  }
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const result = {
    callsPerSecond: Math.round((calls / seconds) * 10) / 10,
    meanMs: Math.round((seconds * 1000 * 100) / calls) / 100,
    p99Ms: Math.round(latencies[Math.floor(calls * 0.99)]! * 100) / 100,
  };
  ctx.log(`${name}: ${calls} calls, ${result.callsPerSecond} calls/s, mean ${result.meanMs} ms`);
  return result;
}

export default async function ipmi(ctx: BenchContext): Promise<BenchReport> {
  requireBinary('ipmi_sim', 'openipmi');
  requireBinary('ipmitool', 'ipmitool');
  const calls = Math.max(20, Math.round(1000 * ctx.scale));
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bm-bench-ipmi-'));
  const port = await freeUdpPort();
  const password = 'bench-sim-pw';
  await writeFile(
    path.join(dir, 'lan.conf'),
    `name "bench"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 ${port}\n    priv_limit admin\n    allowed_auths_callback none md2 md5 straight\n    allowed_auths_user none md2 md5 straight\n    allowed_auths_operator none md2 md5 straight\n    allowed_auths_admin none md2 md5 straight\n    guid a123456789abcdefa123456789abcdef\n  endlan\n  user 2 true  "admin"   "${password}" admin    10       none md2 md5 straight\n`,
  );
  await writeFile(
    path.join(dir, 'sim.emu'),
    'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n',
  );
  const sim = spawn('ipmi_sim', ['-c', path.join(dir, 'lan.conf'), '-f', path.join(dir, 'sim.emu'), '-n', '-s', path.join(dir, 'state')], {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  const pool = new SessionPool();
  try {
    await new Promise((r) => setTimeout(r, 300));
    if (sim.exitCode !== null) throw new Error(`ipmi_sim exited at start with ${sim.exitCode}`);
    const target: BmcTarget = { nodeUuid: 'bench-node', driver: 'ipmi', address: '127.0.0.1', port, username: 'admin', password };
    const native = await measure(ctx, 'native', new IpmiDriver(target, { pool }), calls);
    // With session set-up in every call (a fresh pool each time): what one call costs a BMC seen for the first time.
    const coldCalls = Math.min(50, calls);
    const coldStart = performance.now();
    for (let i = 0; i < coldCalls; i++) {
      const fresh = new SessionPool();
      try {
        await new IpmiDriver(target, { pool: fresh }).getPowerState();
      } finally {
        await fresh.close();
      }
    }
    const nativeColdMs = Math.round(((performance.now() - coldStart) / coldCalls) * 100) / 100;
    ctx.log(`native with a new session per call: ${nativeColdMs} ms per call`);
    const ipmitool = await measure(ctx, 'ipmitool', new IpmitoolDriver({ ...target, driver: 'ipmitool' }), calls);
    const ratio = native.callsPerSecond / ipmitool.callsPerSecond;
    return {
      results: {
        calls,
        // Other work on this machine skews the figures: the 1-minute load average when the run ended.
        loadAverage1m: Math.round(os.loadavg()[0]! * 100) / 100,
        simulator: 'ipmi_sim (openipmi), power kept in the simulator',
        nativeCallsPerSecond: native.callsPerSecond,
        nativeMeanMs: native.meanMs,
        nativeP99Ms: native.p99Ms,
        nativeSessionsOpened: pool.stats().sessionsOpened,
        nativeNewSessionPerCallMs: nativeColdMs,
        ipmitoolCallsPerSecond: ipmitool.callsPerSecond,
        ipmitoolMeanMs: ipmitool.meanMs,
        ipmitoolP99Ms: ipmitool.p99Ms,
        ratio: Math.round(ratio * 10) / 10,
        peakRssMiB: peakRssMiB(),
      },
      goals: [goal('native power-status calls/s vs ipmitool', ratio, '>=', 10)],
    };
  } finally {
    await pool.close();
    if (sim.exitCode === null) {
      sim.kill('SIGTERM');
      await new Promise((r) => sim.once('exit', r));
    }
    await rm(dir, { recursive: true, force: true });
  }
}
