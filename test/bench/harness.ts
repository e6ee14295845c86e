/**
 * The benchmark contract of DESIGN.md: every benchmark measures ours and its
 * peer in the same run, and reports figures plus goals whose `value` is
 * measured, never copied from the target.
 */

export type GoalOp = '>=' | '<=';

export interface Goal {
  readonly name: string;
  readonly value: number | null;
  readonly op: GoalOp;
  readonly target: number;
  readonly met: boolean;
  readonly why?: string;
}

export interface BenchReport {
  readonly results: Readonly<Record<string, unknown>>;
  readonly goals: readonly Goal[];
}

export interface BenchContext {
  /** BENCH_SCALE (default 1): sizes are multiplied by it for quick runs. */
  readonly scale: number;
  /** Progress lines go to stderr so stdout's last line stays the JSON. */
  log(message: string): void;
}

export type Bench = (ctx: BenchContext) => Promise<BenchReport>;

/** A goal judged from a measured value; null means it could not be measured. */
export function goal(name: string, value: number | null, op: GoalOp, target: number, why?: string): Goal {
  if (value === null || !Number.isFinite(value)) {
    return { name, value: null, op, target, met: false, why: why ?? 'not measured' };
  }
  const rounded = Math.round(value * 1000) / 1000;
  const met = op === '>=' ? value >= target : value <= target;
  return why === undefined ? { name, value: rounded, op, target, met } : { name, value: rounded, op, target, met, why };
}

/** Peak resident set size of this process so far, in MiB. */
export function peakRssMiB(): number {
  return Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10;
}
