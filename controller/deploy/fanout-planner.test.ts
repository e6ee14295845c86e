import { describe, expect, it } from 'vitest';
import { FanoutPlanner, type FanoutLease } from './fanout-planner.ts';

const joiner = (planner: FanoutPlanner, name: string, imageKey = 'img') =>
  planner.join({ nodeUuid: name, imageKey, agentAddress: `${name}:9999`, agentToken: `token-${name}` });

describe('the fan-out planner', () => {
  it('feeds one root from the controller and fills relays breadth first, fan-out 2 each', () => {
    const planner = new FanoutPlanner();
    const leases = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6'].map((name) => joiner(planner, name));
    expect(leases.map((l) => l.upstream?.nodeUuid)).toEqual([undefined, 'n0', 'n0', 'n1', 'n1', 'n2', 'n2']);
    expect(leases[3]!.upstream).toEqual({ nodeUuid: 'n1', address: 'n1:9999', token: 'token-n1' });
    expect(leases.map((l) => l.followers())).toEqual([2, 2, 2, 0, 0, 0, 0]);
  });

  it('makes a chain at fan-out 1 and keeps images apart', () => {
    const planner = new FanoutPlanner({ fanout: 1 });
    const chain = ['a', 'b', 'c'].map((name) => joiner(planner, name));
    const other = joiner(planner, 'x', 'other-image');
    expect(chain.map((l) => l.upstream?.nodeUuid)).toEqual([undefined, 'a', 'b']);
    expect(other.upstream).toBeUndefined();
    expect(planner.streaming('img')).toBe(3);
  });

  it('gives no new followers to a deploy that finished, and sends a joiner to the controller when no relay is left', () => {
    const planner = new FanoutPlanner({ fanout: 1 });
    const root = joiner(planner, 'root');
    root.leave();
    expect(joiner(planner, 'late').upstream).toBeUndefined();
  });

  it('frees a relay slot when its follower falls back, and tells the relay once nobody follows it', async () => {
    const planner = new FanoutPlanner({ fanout: 1 });
    const root = joiner(planner, 'root');
    const follower: FanoutLease = joiner(planner, 'f');
    expect(follower.upstream?.nodeUuid).toBe('root');
    let idle = false;
    const waiting = root.followersDone(10_000).then(() => (idle = true));
    await Promise.resolve();
    expect(idle).toBe(false);
    follower.fellBack();
    await waiting;
    expect(idle).toBe(true);
    // The slot is free again, and the fallen-back follower, now fed by the controller, may still relay.
    expect(joiner(planner, 'g').upstream?.nodeUuid).toBe('root');
    expect(joiner(planner, 'h').upstream?.nodeUuid).toBe('f');
  });

  it('stops waiting for followers after the timeout', async () => {
    const planner = new FanoutPlanner();
    const root = joiner(planner, 'root');
    joiner(planner, 'f');
    const t0 = Date.now();
    await root.followersDone(50);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
  });

  it('replaces the earlier place of a node that joins again', () => {
    const planner = new FanoutPlanner({ fanout: 1 });
    joiner(planner, 'root');
    joiner(planner, 'f');
    const again = joiner(planner, 'f');
    expect(again.upstream?.nodeUuid).toBe('root');
    expect(planner.streaming('img')).toBe(2);
  });
});
