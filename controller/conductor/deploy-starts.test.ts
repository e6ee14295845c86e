import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { DeployStartQueue } from './deploy-starts.ts';

/** A start that finishes when the test says so. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

describe('DeployStartQueue', () => {
  it('runs at most its concurrency at once, the rest in arrival order, and reports the depth as a metric', async () => {
    const registry = new Registry();
    const queue = new DeployStartQueue(2, registry);
    const gates = Array.from({ length: 5 }, gate);
    const began: number[] = [];
    const runs = gates.map((g, i) =>
      queue.run(new AbortController().signal, async () => {
        began.push(i);
        await g.promise;
        return i;
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(began).toEqual([0, 1]);
    expect(queue.depth).toBe(3);
    expect(await registry.getSingleMetricAsString('bm_deploy_start_queue_depth')).toMatch(/bm_deploy_start_queue_depth 3$/m);
    gates[1]!.open();
    await runs[1];
    await new Promise((r) => setImmediate(r));
    expect(began).toEqual([0, 1, 2]);
    expect(queue.running).toBe(2);
    for (const g of gates) g.open();
    expect(await Promise.all(runs)).toEqual([0, 1, 2, 3, 4]);
    expect(queue.depth).toBe(0);
    expect(queue.running).toBe(0);
    expect(await registry.getSingleMetricAsString('bm_deploy_start_queue_depth')).toMatch(/bm_deploy_start_queue_depth 0$/m);
  });

  it('drops a waiting start whose task is stopped, without running it or losing the slot', async () => {
    const queue = new DeployStartQueue(1);
    const first = gate();
    const running = queue.run(new AbortController().signal, () => first.promise);
    const stop = new AbortController();
    let ran = false;
    const waiting = queue.run(stop.signal, async () => {
      ran = true;
    });
    const after = queue.run(new AbortController().signal, async () => 'after');
    stop.abort(new Error('controller stopping'));
    await expect(waiting).rejects.toThrow('controller stopping');
    expect(queue.depth).toBe(1);
    first.open();
    await running;
    expect(await after).toBe('after');
    expect(ran).toBe(false);
    expect(queue.running).toBe(0);
  });

  it('frees the slot when a start fails', async () => {
    const queue = new DeployStartQueue(1);
    await expect(queue.run(new AbortController().signal, async () => Promise.reject(new Error('BMC refused')))).rejects.toThrow(
      'BMC refused',
    );
    expect(await queue.run(new AbortController().signal, async () => 'next')).toBe('next');
  });

  it('refuses a concurrency below one', () => {
    expect(() => new DeployStartQueue(0)).toThrow(RangeError);
  });
});
