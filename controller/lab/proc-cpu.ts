/**
 * CPU time from /proc/<pid>/stat, for the lab and the benches that measure
 * what its processes cost (its machines share this host's cores).
 */
import { readFileSync } from 'node:fs';

/** USER_HZ: what /proc/<pid>/stat counts CPU time in. */
const CLOCK_TICKS = 100;

/**
 * User + system CPU seconds of a process (all its threads): its own
 * (fields 14, 15), or those of the children it has reaped (16, 17). Null when
 * /proc cannot tell (the process is gone, or this is not Linux).
 */
export function cpuSecondsOf(pid: number | 'self', of: 'own' | 'reaped-children' = 'own'): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the command name (which may hold spaces) start at ")".
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const at = of === 'own' ? 11 : 13;
  const seconds = (Number(fields[at]) + Number(fields[at + 1])) / CLOCK_TICKS;
  return Number.isFinite(seconds) ? seconds : null;
}
