import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { pino } from 'pino';
import type { EventBus, NodeEvent } from '../events/bus.ts';
import type { BmcTarget, PowerControl, PowerState, PowerTarget } from '../drivers/power/types.ts';
import { PowerSync, type PowerSyncStore, type SyncCandidate, type UnreadableCandidate } from './power-sync.ts';

/** Fake BMCs keyed by address: a state, or 'dead' for one that never answers. */
function fakeFleet(bmcs: Map<string, PowerState | 'dead'>) {
  const sets: string[] = [];
  const factory = (t: BmcTarget): PowerControl => ({
    async getPowerState() {
      const s = bmcs.get(t.address);
      if (s === 'dead' || s === undefined) throw new Error(`BMC ${t.address} did not answer`);
      return s;
    },
    async setPowerState(target: PowerTarget) {
      sets.push(`${t.address}=${target}`);
      bmcs.set(t.address, target === 'on' || target === 'reboot' ? 'on' : 'off');
    },
    async setBootDevice() {},
    async getBootDevice() {
      return { device: 'pxe', persistent: false, uefi: false };
    },
    async close() {},
  });
  return { factory, sets };
}

function memoryStore(nodes: SyncCandidate[]) {
  const rows = new Map(nodes.map((n) => [n.uuid, { ...n, lastError: null as string | null }]));
  const store: PowerSyncStore = {
    async candidates() {
      return [...rows.values()];
    },
    async recordPower(uuid, state) {
      rows.get(uuid)!.powerState = state;
    },
    async recordFailures(uuid, failures, lastError) {
      const r = rows.get(uuid)!;
      r.failures = failures;
      if (lastError !== null) r.lastError = lastError;
    },
  };
  return { store, rows };
}

function bus(): EventBus & { events: NodeEvent[] } {
  const events: NodeEvent[] = [];
  return {
    events,
    publish: (e) => void events.push(e),
    subscribe: () => {
      throw new Error('not used');
    },
    flush: async () => {},
    close: async () => {},
  };
}

const node = (i: number, powerState: string, maintenance = false): SyncCandidate => ({
  uuid: `node-${i}`,
  provisionState: 'manageable',
  powerState,
  maintenance,
  failures: 0,
  target: { nodeUuid: `node-${i}`, driver: 'fake', address: `bmc-${i}`, port: 623, username: 'u', password: 'p' },
});

const opts = { intervalMs: 60_000, concurrency: 8, enforce: false, failureThreshold: 3, callTimeoutMs: 200 };

describe('power sync loop', () => {
  it('records states that changed behind its back and publishes them', async () => {
    const bmcs = new Map<string, PowerState | 'dead'>([
      ['bmc-1', 'on'],
      ['bmc-2', 'off'],
      ['bmc-3', 'on'],
    ]);
    const { store, rows } = memoryStore([node(1, 'on'), node(2, 'on'), node(3, 'unknown')]);
    const events = bus();
    const sync = new PowerSync(store, fakeFleet(bmcs).factory, events, opts, new Registry(), pino({ level: 'silent' }));
    const report = await sync.sweep();
    expect(report).toMatchObject({ nodes: 3, changed: 2, failed: 0 });
    expect(rows.get('node-2')!.powerState).toBe('off');
    expect(rows.get('node-3')!.powerState).toBe('on');
    expect(events.events.map((e) => `${e.nodeUuid}:${e.type}:${e.powerState}`).sort()).toEqual([
      'node-2:power.changed:off',
      'node-3:power.changed:on',
    ]);
  });

  it('enforces the expected state when configured, but not on nodes in maintenance', async () => {
    const bmcs = new Map<string, PowerState | 'dead'>([
      ['bmc-1', 'off'],
      ['bmc-2', 'off'],
    ]);
    const fleet = fakeFleet(bmcs);
    const { store, rows } = memoryStore([node(1, 'on'), node(2, 'on', true)]);
    const sync = new PowerSync(store, fleet.factory, bus(), { ...opts, enforce: true }, new Registry(), pino({ level: 'silent' }));
    const report = await sync.sweep();
    expect(report).toMatchObject({ enforced: 1, changed: 1 });
    expect(fleet.sets).toEqual(['bmc-1=on']);
    expect(bmcs.get('bmc-1')).toBe('on');
    expect(rows.get('node-2')!.powerState).toBe('off');
  });

  it('flags a node after N consecutive failures, once, and clears the count when it answers again', async () => {
    const bmcs = new Map<string, PowerState | 'dead'>([['bmc-1', 'dead']]);
    const { store, rows } = memoryStore([node(1, 'on')]);
    const events = bus();
    const sync = new PowerSync(store, fakeFleet(bmcs).factory, events, opts, new Registry(), pino({ level: 'silent' }));
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push(await sync.sweep());
    expect(outcomes.map((o) => o.flagged)).toEqual([0, 0, 1, 0]);
    expect(rows.get('node-1')!.failures).toBe(4);
    expect(rows.get('node-1')!.lastError).toMatch(/^power sync failing: BMC bmc-1 did not answer/);
    expect(events.events.filter((e) => e.type === 'power.sync-failing')).toHaveLength(1);
    bmcs.set('bmc-1', 'on');
    await sync.sweep();
    expect(rows.get('node-1')!.failures).toBe(0);
  });

  it('bounds a BMC that hangs by the call timeout and counts metrics', async () => {
    const registry = new Registry();
    const { store } = memoryStore([node(1, 'on'), node(2, 'on')]);
    const hanging = (t: BmcTarget): PowerControl => ({
      getPowerState: () => (t.address === 'bmc-1' ? new Promise<PowerState>(() => undefined) : Promise.resolve('on')),
      setPowerState: async () => {},
      setBootDevice: async () => {},
      getBootDevice: async () => ({ device: 'pxe', persistent: false, uefi: false }),
      close: async () => {},
    });
    const sync = new PowerSync(store, hanging, bus(), { ...opts, callTimeoutMs: 100 }, registry, pino({ level: 'silent' }));
    const started = Date.now();
    const report = await sync.sweep();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(report).toMatchObject({ nodes: 2, failed: 1 });
    const text = await registry.metrics();
    expect(text).toMatch(/bm_power_sync_calls_total 2/);
    expect(text).toMatch(/bm_power_sync_failures_total 1/);
  });

  it('skips a node whose password cannot be decrypted with last_error, once, and polls the others', async () => {
    const bmcs = new Map<string, PowerState | 'dead'>([
      ['bmc-1', 'off'],
      ['bmc-3', 'off'],
    ]);
    const { store: inner, rows } = memoryStore([node(1, 'on'), node(3, 'on')]);
    const sealed: { -readonly [K in keyof UnreadableCandidate]: UnreadableCandidate[K] } = {
      uuid: 'node-2',
      provisionState: 'manageable',
      failures: 0,
      lastError: null,
      passwordError: 'encrypted with a different key',
    };
    const recorded: string[] = [];
    const store: PowerSyncStore = {
      ...inner,
      async candidates() {
        return [...(await inner.candidates()), sealed];
      },
      async recordFailures(uuid, failures, lastError) {
        if (uuid === 'node-2') {
          recorded.push(String(lastError));
          sealed.lastError = lastError;
          return;
        }
        await inner.recordFailures(uuid, failures, lastError);
      },
    };
    const events = bus();
    const sync = new PowerSync(store, fakeFleet(bmcs).factory, events, opts, new Registry(), pino({ level: 'silent' }));
    const first = await sync.sweep();
    expect(first).toMatchObject({ nodes: 3, changed: 2, unreadable: 1, failed: 0 });
    expect(rows.get('node-1')!.powerState).toBe('off');
    expect(rows.get('node-3')!.powerState).toBe('off');
    expect(recorded).toEqual(['cannot decrypt the BMC password: encrypted with a different key']);
    await sync.sweep();
    // Recorded and announced once, not every interval.
    expect(recorded).toHaveLength(1);
    expect(events.events.filter((e) => e.nodeUuid === 'node-2').map((e) => e.message)).toEqual([
      'cannot decrypt the BMC password: encrypted with a different key',
    ]);
  });

  it('lets one node whose enforce call fails fail alone', async () => {
    const bmcs = new Map<string, PowerState | 'dead'>([
      ['bmc-1', 'off'],
      ['bmc-2', 'off'],
    ]);
    const fleet = fakeFleet(bmcs);
    const factory = (t: BmcTarget): PowerControl => ({
      ...fleet.factory(t),
      setPowerState: async () => {
        if (t.address === 'bmc-1') throw new Error('BMC bmc-1 refused the command');
      },
    });
    const { store } = memoryStore([node(1, 'on'), node(2, 'on')]);
    const sync = new PowerSync(store, factory, bus(), { ...opts, enforce: true }, new Registry(), pino({ level: 'silent' }));
    expect(await sync.sweep()).toMatchObject({ nodes: 2, enforced: 1, failed: 1 });
  });
});
