import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.ts';
import { Subjects } from './subjects.ts';

describe('NATS subjects', () => {
  it('builds node event subjects from the prefix, bm by default', async () => {
    expect(new Subjects().nodeEvents('0190c0de-0000-7000-8000-000000000001')).toBe('bm.events.node.0190c0de-0000-7000-8000-000000000001');
    expect(new Subjects('lab_7.east').nodeEvents(null)).toBe('lab_7.east.events.node.*');
    expect((await loadConfig(undefined, {})).config.nats.prefix).toBe('bm');
    expect((await loadConfig(undefined, { BM_NATS_PREFIX: 'cluster2' })).config.nats.prefix).toBe('cluster2');
  });

  it('refuses a prefix with wildcards, spaces or empty tokens, naming the key', async () => {
    for (const bad of ['bm.*', 'bm.>', 'b m', 'bm..x', '.bm', '']) {
      expect(() => new Subjects(bad)).toThrow(/nats\.prefix/);
      await expect(loadConfig(undefined, { BM_NATS_PREFIX: bad })).rejects.toThrow(/nats\.prefix/);
    }
  });
});
