/**
 * The task construct and the provision verbs' BMC steps, on the in-memory
 * node store and the fake power driver: fast, no database, no BMC.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../boot/log-limiter.ts';
import { FakeBmcWorld, FakePowerDriver } from '../drivers/power/fake/driver.ts';
import { powerFactory } from '../drivers/power/factory.ts';
import { MemoryEventBus } from '../events/memory-bus.ts';
import { InMemoryNodeStore } from '../nodes/memory-store.ts';
import { uuidv7 } from '../nodes/uuid.ts';
import { SecretBox } from '../secrets/secret-box.ts';
import { BmcAccess } from './bmc-access.ts';
import { Fence } from '../cluster/fence.ts';
import { FencedNodeStore } from '../nodes/fenced-store.ts';
import { StaleOwnerError } from '../nodes/owner.ts';
import { withNodeReservation } from './reservation.ts';
import { TaskManager } from './task.ts';
import { UnreleasedReservations } from './unreleased.ts';

const secrets = new SecretBox(randomBytes(32));

async function setup(state = 'enroll') {
  const store = new InMemoryNodeStore();
  const bus = new MemoryEventBus();
  const world = new FakeBmcWorld();
  const bmc = new BmcAccess(store, secrets, powerFactory({ fake: (t) => new FakePowerDriver(t, world) }));
  const tasks = new TaskManager(store, bus, { controllerId: 'ctl-a', lockWaitMs: 300 }, silentLogger);
  const uuid = uuidv7();
  await store.createNode(
    {
      uuid,
      name: 'n1',
      group: 'default',
      cpus: 1,
      memoryMb: 1,
      localGb: 1,
      cpuArch: 'x86_64',
      pmAddress: 'bmc-1',
      pmPort: 623,
      pmUser: 'u',
      pmPasswordEnc: secrets.encrypt('pw', uuid),
      powerDriver: 'fake',
      properties: {},
    },
    [{ uuid: uuidv7(), mac: '52:54:00:00:00:01' }],
  );
  if (state !== 'enroll') await store.transition(uuid, 'enroll', state, {}, null);
  return { store, bus, world, bmc, tasks, uuid };
}

describe('TaskManager', () => {
  it('counts a node as busy from its reservation on, before the task runs (the recovery sweep must not take it)', async () => {
    const { store, tasks, uuid } = await setup();
    const seen: boolean[] = [];
    // Look at busy() the moment the reservation is in the store, before the transition and the task.
    const reserve = store.reserve.bind(store);
    store.reserve = async (...args: Parameters<typeof store.reserve>) => {
      const epoch = await reserve(...args);
      seen.push(tasks.busy(uuid));
      return epoch;
    };
    expect(tasks.busy(uuid)).toBe(false);
    await tasks.start(uuid, 'manage', async (ctx) => {
      await ctx.advance('done');
    });
    await tasks.drain();
    expect(seen).toEqual([true]);
    expect(tasks.busy(uuid)).toBe(false);
  });

  it('locks, transitions, runs the work holding the lock, and releases it', async () => {
    const { store, bus, tasks, uuid } = await setup();
    let heldDuringWork: string | null = null;
    const node = await tasks.start(uuid, 'manage', async (ctx) => {
      heldDuringWork = (await store.findNode(uuid))!.reservation;
      await ctx.advance('done');
    });
    expect(node.provisionState).toBe('verifying');
    await tasks.drain();
    expect(heldDuringWork).toBe('ctl-a');
    const after = (await store.findNode(uuid))!;
    expect(after).toMatchObject({ provisionState: 'manageable', reservation: null });
    expect(bus.published.filter((e) => e.type === 'provision.changed').map((e) => e.provisionState)).toEqual(['verifying', 'manageable']);
  });

  it('refuses a verb the state table does not allow, naming the state, and leaves the node alone', async () => {
    const { store, tasks, uuid } = await setup();
    const before = (await store.findNode(uuid))!;
    await expect(tasks.start(uuid, 'provide', async () => undefined)).rejects.toThrow(/is enroll: cannot provide \(possible: manage\)/);
    const after = (await store.findNode(uuid))!;
    expect(after).toMatchObject({ provisionState: 'enroll', reservation: null, version: before.version });
  });

  it('ends failed work in the failed state with last_error, and releases the lock even then', async () => {
    const { store, tasks, uuid } = await setup();
    const reasons: string[] = [];
    await tasks.start(
      uuid,
      'manage',
      async () => {
        throw new Error('BMC said no');
      },
      {},
      async (reason) => void reasons.push(reason),
    );
    await tasks.drain();
    expect(await store.findNode(uuid)).toMatchObject({ provisionState: 'verify-failed', lastError: 'BMC said no', reservation: null });
    expect(reasons).toEqual(['BMC said no']);
  });

  it("waits for another task's lock only briefly, then says who holds it", async () => {
    const { store, tasks, uuid } = await setup('manageable');
    await store.reserve(uuid, 'ctl-b');
    await expect(tasks.start(uuid, 'manage', async () => undefined)).rejects.toThrow(/locked by controller ctl-b/);
    expect((await store.findNode(uuid))!.provisionState).toBe('manageable');
  });

  it('cancels a running task: it fails with the reason and lets go', async () => {
    const { store, tasks, uuid } = await setup('available');
    await tasks.start(
      uuid,
      'deploy',
      (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))),
    );
    expect(tasks.busy(uuid)).toBe(true);
    expect(await tasks.cancel(uuid, 'instance deleted')).toBe(true);
    expect(await store.findNode(uuid)).toMatchObject({
      provisionState: 'deploy-failed',
      lastError: 'cancelled: instance deleted',
      reservation: null,
    });
  });

  it("on stop, interrupts work but keeps the node's state for whoever takes it over", async () => {
    const { store, tasks, uuid } = await setup('available');
    await tasks.start(
      uuid,
      'deploy',
      (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted')))),
    );
    await tasks.stop();
    expect(await store.findNode(uuid)).toMatchObject({ provisionState: 'deploying', reservation: null });
  });
});

describe('TaskManager with a fence and owner epochs', () => {
  it('refuses the late write of an owner whose node a peer took over, and ends its task without touching the node', async () => {
    const { store, tasks, uuid } = await setup('available');
    let resume!: () => void;
    const paused = new Promise<void>((r) => (resume = r));
    const reasons: string[] = [];
    await tasks.start(
      uuid,
      'deploy',
      async (ctx) => {
        await paused;
        await ctx.record({ lastError: 'late write from the old owner' });
      },
      {},
      async (reason) => void reasons.push(reason),
    );
    // The peer: breaks the old owner's reservation (epoch +1), reserves (epoch +1) and moves the node on.
    store.breakReservation(uuid);
    const epoch = await store.reserve(uuid, 'ctl-b');
    expect(epoch).toBe(3);
    const taken = (await store.findNode(uuid))!;
    await store.transition(uuid, 'deploying', 'wait-callback', {}, null, { controllerId: 'ctl-b', epoch: epoch! });
    resume();
    await tasks.drain();
    expect(await store.findNode(uuid)).toMatchObject({
      provisionState: 'wait-callback',
      reservation: 'ctl-b',
      ownerEpoch: 3,
      lastError: taken.lastError,
    });
    expect(reasons).toEqual([]);
    await expect(store.recordState(uuid, { lastError: 'x' }, { controllerId: 'ctl-a', epoch: 1 })).rejects.toThrow(StaleOwnerError);
  });

  it('lets a fenced controller read its nodes but write none, whoever asks', async () => {
    const { store, uuid } = await setup('available');
    const clock = { now: 0 };
    const fence = new Fence({ controllerId: 'ctl-a', fenceAfterMs: 1000, clock: () => clock.now }, silentLogger);
    fence.renewed(fence.renewStarted());
    const fenced = new FencedNodeStore(store, fence);
    clock.now = 1000;
    expect((await fenced.findNode(uuid))?.provisionState).toBe('available');
    await expect(fenced.recordAgent(uuid, '127.0.0.1:9999', new Date())).rejects.toThrow(/controller fenced/);
    await expect(fenced.reserve(uuid, 'ctl-a')).rejects.toThrow(/controller fenced/);
    await expect(fenced.updateNode(uuid, { name: 'renamed' }, null)).rejects.toThrow(/controller fenced/);
    expect(await store.findNode(uuid)).toMatchObject({ name: 'n1', reservation: null, agentAddress: null });
  });

  it('stops a running task when the fence closes, keeping the node and its reservation, and starts none while fenced', async () => {
    const { store, bus, uuid } = await setup('available');
    const clock = { now: 0 };
    const fence = new Fence({ controllerId: 'ctl-a', fenceAfterMs: 1000, clock: () => clock.now }, silentLogger);
    fence.renewed(fence.renewStarted());
    const tasks = new TaskManager(store, bus, { controllerId: 'ctl-a', lockWaitMs: 300, fence }, silentLogger);
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    let wroteAfterFence = false;
    await tasks.start(uuid, 'deploy', async (ctx) => {
      started();
      await new Promise((r) => ctx.signal.addEventListener('abort', r));
      await ctx.record({ lastError: 'should not land' }).then(() => (wroteAfterFence = true));
    });
    await running;
    clock.now = 1000;
    expect(fence.fenced).toBe(true);
    await tasks.drain();
    expect(wroteAfterFence).toBe(false);
    expect(await store.findNode(uuid)).toMatchObject({ provisionState: 'deploying', reservation: 'ctl-a', lastError: null });
    await expect(tasks.start(uuid, 'fail', async () => undefined)).rejects.toThrow(/controller fenced/);
  });
});

describe('reservations left while fenced', () => {
  async function fencedSetup() {
    const base = await setup('available');
    const clock = { now: 0 };
    const fence = new Fence({ controllerId: 'ctl-a', fenceAfterMs: 1000, clock: () => clock.now }, silentLogger);
    fence.renewed(fence.renewStarted());
    const unreleased = new UnreleasedReservations();
    const fenced = new FencedNodeStore(base.store, fence);
    const tasks = new TaskManager(fenced, base.bus, { controllerId: 'ctl-a', lockWaitMs: 300, fence, unreleased }, silentLogger);
    const unfence = (): void => {
      clock.now += 1;
      fence.renewed(fence.renewStarted());
    };
    /** A deploy whose last write lands, then the fence closes before the task can release (a stalled event loop under load). */
    const deployEndingFenced = async (): Promise<void> => {
      let finish!: () => void;
      const finishing = new Promise<void>((r) => (finish = r));
      await tasks.start(base.uuid, 'deploy', async (ctx) => {
        await ctx.advance('done');
        await finishing;
      });
      clock.now = 1000;
      expect(fence.fenced).toBe(true);
      finish();
      await tasks.drain();
    };
    return { ...base, clock, fence, fenced, unreleased, tasks, unfence, deployEndingFenced };
  }

  it('a task that reached its last state as the fence closed lets go of the node once unfenced, not before', async () => {
    const { store, fence, tasks, unfence, uuid, deployEndingFenced } = await fencedSetup();
    await deployEndingFenced();
    expect(await store.findNode(uuid)).toMatchObject({ provisionState: 'active', reservation: 'ctl-a' });
    // Still fenced: the sweep cannot release yet, and keeps it for the next try.
    expect(await tasks.releaseLeftovers()).toBe(0);
    expect((await store.findNode(uuid))?.reservation).toBe('ctl-a');
    unfence();
    expect(fence.fenced).toBe(false);
    expect(await tasks.releaseLeftovers()).toBe(1);
    expect(await store.findNode(uuid)).toMatchObject({ provisionState: 'active', reservation: null });
    // The next verb on the node is not refused as locked.
    await tasks.start(uuid, 'undeploy', async (ctx) => void (await ctx.advance('done')));
    await tasks.drain();
    expect(await store.findNode(uuid)).toMatchObject({ provisionState: 'cleaning', reservation: null });
  });

  it('leaves alone a node taken over by a peer, or reserved again by us, since the release was refused', async () => {
    const { store, tasks, unfence, uuid, deployEndingFenced } = await fencedSetup();
    await deployEndingFenced();
    // A peer judged us dead, broke the reservation and holds the node now; later it hands it back to our name.
    store.breakReservation(uuid);
    expect(await store.reserve(uuid, 'ctl-b')).not.toBeNull();
    unfence();
    expect(await tasks.releaseLeftovers()).toBe(1);
    expect((await store.findNode(uuid))?.reservation).toBe('ctl-b');
    await store.release(uuid, 'ctl-b');
    const again = await store.reserve(uuid, 'ctl-a');
    expect(await tasks.releaseLeftovers()).toBe(0);
    expect(await store.findNode(uuid)).toMatchObject({ reservation: 'ctl-a', ownerEpoch: again });
  });

  it('a power verb whose release the fence refused lets go once unfenced', async () => {
    const { store, clock, fenced, unreleased, tasks, unfence, uuid } = await fencedSetup();
    await expect(withNodeReservation(fenced, uuid, 'ctl-a', async () => void (clock.now = 1000), { unreleased })).resolves.toBeUndefined();
    expect((await store.findNode(uuid))?.reservation).toBe('ctl-a');
    expect(unreleased.size).toBe(1);
    unfence();
    expect(await tasks.releaseLeftovers()).toBe(1);
    expect((await store.findNode(uuid))?.reservation).toBeNull();
    // Without a place to wait, the refusal is the verb's error, as before.
    await expect(withNodeReservation(fenced, uuid, 'ctl-a', async () => void (clock.now = 3000))).rejects.toThrow(/controller fenced/);
  });
});

describe('BmcAccess with the fake driver', () => {
  it("opens the node's BMC with its decrypted password, and says so when it cannot decrypt", async () => {
    const { store, world, bmc, uuid } = await setup();
    const node = (await store.findNode(uuid))!;
    expect(await bmc.with(node, (c) => c.getPowerState())).toBe('off');
    expect(world.machine('bmc-1').calls).toEqual(['power status']);
    await store.updateNode(uuid, { pmPasswordEnc: new SecretBox(randomBytes(32)).encrypt('pw', uuid) }, null);
    await expect(bmc.with((await store.findNode(uuid))!, (c) => c.getPowerState())).rejects.toThrow(/cannot decrypt the BMC password/);
  });
});
