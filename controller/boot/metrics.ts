/**
 * The boot services' counters as Prometheus series, read from their stats
 * objects when scraped (the protocol code keeps plain counters and knows
 * nothing of prom-client).
 */
import { Gauge, type Registry } from 'prom-client';

type Counters = Readonly<Record<string, number>>;

/** One labelled series per counter of each stats object: bm_<name>_events{kind="..."}. */
export function registerStatsMetrics(registry: Registry, sources: Readonly<Record<string, () => Counters>>): void {
  for (const [name, read] of Object.entries(sources)) {
    new Gauge({
      name: `bm_${name}_events`,
      help: `${name} server counters since start, by kind`,
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        for (const [kind, value] of Object.entries(read())) {
          if (typeof value === 'number') this.set({ kind }, value);
        }
      },
    });
  }
}
