import { describe, expect, it } from 'vitest';
import { uuidv7 } from '../nodes/uuid.ts';
import { HashRing } from './hash-ring.ts';

const nodes = Array.from({ length: 3000 }, (_, i) => uuidv7(1_700_000_000_000 + i));

describe('HashRing', () => {
  it('spreads nodes evenly over the members', () => {
    const ring = new HashRing(['ctl-a', 'ctl-b', 'ctl-c']);
    const counts = new Map<string, number>();
    for (const n of nodes) counts.set(ring.owner(n)!, (counts.get(ring.owner(n)!) ?? 0) + 1);
    for (const member of ring.members) expect(counts.get(member)! / nodes.length).toBeGreaterThan(0.25);
  });

  it('moves about 1/N of the nodes when a controller joins, all of them to the newcomer', () => {
    const before = new HashRing(['ctl-a', 'ctl-b', 'ctl-c']);
    const after = new HashRing(['ctl-a', 'ctl-b', 'ctl-c', 'ctl-d']);
    const moved = nodes.filter((n) => before.owner(n) !== after.owner(n));
    expect(moved.length / nodes.length).toBeGreaterThan(0.15);
    expect(moved.length / nodes.length).toBeLessThan(0.35);
    for (const n of moved) expect(after.owner(n)).toBe('ctl-d');
  });

  it("gives a dead controller's nodes to the others and moves nothing else", () => {
    const before = new HashRing(['ctl-a', 'ctl-b', 'ctl-c']);
    const after = new HashRing(['ctl-a', 'ctl-c']);
    for (const n of nodes) {
      if (before.owner(n) !== 'ctl-b') expect(after.owner(n)).toBe(before.owner(n));
      else expect(['ctl-a', 'ctl-c']).toContain(after.owner(n));
    }
  });

  it('is the same ring whatever order the members come in, and empty without members', () => {
    const a = new HashRing(['x', 'y', 'z']);
    const b = new HashRing(['z', 'x', 'y', 'x']);
    for (const n of nodes.slice(0, 200)) expect(a.owner(n)).toBe(b.owner(n));
    expect(new HashRing([]).owner(nodes[0]!)).toBeNull();
  });
});
