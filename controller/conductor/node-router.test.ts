/** Where an action runs: the router's decision, with an in-memory store, a fake membership and a recording forward client. */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { ForwardAction, ForwardArgs, ForwardResults } from '../cluster/forward-codec.ts';
import type { ForwardClient, ForwardTarget } from '../cluster/forwarding.ts';
import { FencedError, type FenceView } from '../cluster/fence.ts';
import { HashRing } from '../cluster/hash-ring.ts';
import { type ClusterMember, Ownership } from '../cluster/ownership.ts';
import { BmError, NotFoundError } from '../errors.ts';
import type { InstanceRecord } from '../instances/types.ts';
import { InMemoryNodeStore } from '../nodes/memory-store.ts';
import type { NodeRecord } from '../nodes/types.ts';
import { uuidv7 } from '../nodes/uuid.ts';
import type { NodeActions } from './node-actions.ts';
import { NodeRouter } from './node-router.ts';

const self: ClusterMember = { id: 'ctl-a', apiAddress: '127.0.0.1:7001', groups: ['rack1'] };
const peers: (ClusterMember & { alive: boolean })[] = [
  { id: 'ctl-b', apiAddress: '127.0.0.1:7002', groups: ['rack1', 'rack2'], alive: true },
  { id: 'ctl-c', apiAddress: '127.0.0.1:7003', groups: ['rack1'], alive: false },
];

class RecordingLocal implements NodeActions {
  readonly calls: string[] = [];
  readonly store: InMemoryNodeStore;
  constructor(store: InMemoryNodeStore) {
    this.store = store;
  }
  async setPowerState(id: string, target: string): Promise<NodeRecord> {
    this.calls.push(`power-set ${id} ${target}`);
    const node = await this.store.findNode(id);
    if (!node) throw new NotFoundError('node', id);
    return node;
  }
  async powerState(id: string): Promise<string> {
    this.calls.push(`power-get ${id}`);
    if (!(await this.store.findNode(id))) throw new NotFoundError('node', id);
    return 'off';
  }
  async setBootDevice(id: string, device: string) {
    this.calls.push(`boot-device-set ${id} ${device}`);
    return { device, persistent: false, uefi: false };
  }
  async bootDevice(id: string) {
    this.calls.push(`boot-device-get ${id}`);
    return { device: 'disk', persistent: true, uefi: false };
  }
  async provision(id: string, verb: string): Promise<NodeRecord> {
    this.calls.push(`provision ${id} ${verb}`);
    return (await this.store.findNode(id))!;
  }
  async undeploy(instance: InstanceRecord): Promise<void> {
    this.calls.push(`undeploy ${instance.uuid}`);
  }
  async deploy(node: NodeRecord, instance: InstanceRecord): Promise<void> {
    this.calls.push(`deploy ${node.uuid} ${instance.uuid}`);
  }
}

class RecordingForward implements ForwardClient {
  readonly calls: string[] = [];
  failWith: Error | null = null;
  async call<A extends ForwardAction>(owner: ForwardTarget, action: A, args: ForwardArgs[A]): Promise<ForwardResults[A]> {
    this.calls.push(`${owner.id} ${action} ${JSON.stringify(args)}`);
    if (this.failWith) throw this.failWith;
    if (action === 'power-get') return { powerState: 'on' } as ForwardResults[A];
    return null as ForwardResults[A];
  }
}

async function setup() {
  const store = new InMemoryNodeStore();
  const ring = new HashRing(['ctl-a', 'ctl-b']);
  const made: Record<string, NodeRecord> = {};
  // One node the ring gives each live member of rack1, and one in rack2 (served by ctl-b only).
  for (let i = 0; !(made.mine && made.theirs); i++) {
    const uuid = uuidv7(1_700_000_000_000 + i);
    const which = ring.owner(uuid) === 'ctl-a' ? 'mine' : 'theirs';
    if (made[which]) continue;
    made[which] = await store.createNode(
      {
        uuid,
        name: which,
        group: 'rack1',
        cpus: 1,
        memoryMb: 1,
        localGb: 1,
        cpuArch: 'x86_64',
        pmAddress: 'bmc',
        pmPort: 623,
        pmUser: 'u',
        pmPasswordEnc: null,
        powerDriver: 'fake',
        properties: {},
      },
      [],
    );
  }
  made.rack2 = await store.createNode(
    {
      uuid: uuidv7(),
      name: 'rack2',
      group: 'rack2',
      cpus: 1,
      memoryMb: 1,
      localGb: 1,
      cpuArch: 'x86_64',
      pmAddress: 'bmc',
      pmPort: 623,
      pmUser: 'u',
      pmPasswordEnc: null,
      powerDriver: 'fake',
      properties: {},
    },
    [],
  );
  const local = new RecordingLocal(store);
  const forward = new RecordingForward();
  const ownership = new Ownership(
    () => self,
    () => ({ members: async () => peers }),
  );
  const router = new NodeRouter(local, store, ownership, forward, pino({ level: 'silent' }));
  return { store, local, forward, router, nodes: made as Record<'mine' | 'theirs' | 'rack2', NodeRecord> };
}

describe('NodeRouter', () => {
  it('refuses every action at once while this controller is fenced, without reading the store or forwarding', async () => {
    const { local, forward, store, nodes } = await setup();
    const fenced = new FencedError('ctl-a', new Date('2026-01-01T00:00:00Z'));
    const fence: FenceView = {
      fenced: true,
      signal: AbortSignal.abort(fenced),
      check: () => {
        throw fenced;
      },
    };
    const reads: string[] = [];
    const watched = new Proxy(store, {
      get: (target, prop, receiver) => {
        if (prop === 'findNode') reads.push(String(prop));
        const value: unknown = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const ownership = new Ownership(
      () => self,
      () => ({ members: async () => peers }),
    );
    const router = new NodeRouter(local, watched, ownership, forward, pino({ level: 'silent' }), fence);
    await expect(router.setPowerState(nodes.theirs.uuid, 'off')).rejects.toBe(fenced);
    await expect(router.provision(nodes.mine.uuid, 'manage')).rejects.toBe(fenced);
    expect(reads).toEqual([]);
    expect(local.calls).toEqual([]);
    expect(forward.calls).toEqual([]);
  });

  it("runs actions on this controller's own nodes here, and forwards the others' by uuid to their owner", async () => {
    const { local, forward, router, nodes } = await setup();
    await router.setPowerState('mine', 'on');
    await router.provision(nodes.mine.uuid, 'manage');
    expect(local.calls).toEqual(['power-set mine on', `provision ${nodes.mine.uuid} manage`]);
    expect(forward.calls).toEqual([]);

    // By name at the API, by uuid on the wire; the answer is the node as the store has it.
    expect((await router.setPowerState('theirs', 'off')).uuid).toBe(nodes.theirs.uuid);
    expect(await router.powerState('theirs')).toBe('on');
    await router.setBootDevice(nodes.rack2.uuid, 'pxe', true, false);
    expect(forward.calls).toEqual([
      `ctl-b power-set {"node":"${nodes.theirs.uuid}","target":"off"}`,
      `ctl-b power-get {"node":"${nodes.theirs.uuid}"}`,
      `ctl-b boot-device-set {"node":"${nodes.rack2.uuid}","device":"pxe","persistent":true,"uefi":false}`,
    ]);
    expect(local.calls).toHaveLength(2);
  });

  it('lets the local code report bad ids and unknown nodes, exactly as without a cluster', async () => {
    const { local, forward, router } = await setup();
    await expect(router.powerState('no-such-node')).rejects.toThrow(NotFoundError);
    await expect(router.powerState('')).rejects.toThrow(NotFoundError);
    expect(local.calls).toEqual(['power-get no-such-node', 'power-get ']);
    expect(forward.calls).toEqual([]);
  });

  it("routes an instance's teardown by its node; one without a node is local", async () => {
    const { local, forward, router, nodes } = await setup();
    const instance = { uuid: uuidv7(), nodeUuid: nodes.theirs.uuid } as InstanceRecord;
    await router.undeploy(instance);
    await router.undeploy({ ...instance, nodeUuid: null });
    expect(forward.calls).toEqual([`ctl-b undeploy {"instance":"${instance.uuid}"}`]);
    expect(local.calls).toEqual([`undeploy ${instance.uuid}`]);
  });

  it('starts a deploy where the claim put the reservation, not where the ring points now', async () => {
    const { local, forward, router, nodes } = await setup();
    const instance = { uuid: uuidv7(), nodeUuid: nodes.mine.uuid } as InstanceRecord;
    // The ring gives "mine" to ctl-a, but the claim made ctl-b its holder: ctl-b deploys it.
    await router.deploy({ ...nodes.mine, reservation: 'ctl-b' }, instance);
    await router.deploy({ ...nodes.theirs, reservation: 'ctl-a' }, instance);
    // A holder with no live heartbeat is still asked (NATS tells whether it listens), named as best we can.
    await router.deploy({ ...nodes.theirs, reservation: 'ctl-c' }, instance);
    expect(forward.calls).toEqual([
      `ctl-b deploy {"node":"${nodes.mine.uuid}","instance":"${instance.uuid}"}`,
      `ctl-c deploy {"node":"${nodes.theirs.uuid}","instance":"${instance.uuid}"}`,
    ]);
    expect(local.calls).toEqual([`deploy ${nodes.theirs.uuid} ${instance.uuid}`]);
  });

  it("hands the owner's failure to the caller as it came, and runs nothing here", async () => {
    const { local, forward, router } = await setup();
    forward.failWith = new BmError('unavailable', 'the node owner, controller ctl-b (API 127.0.0.1:7002), did not answer');
    await expect(router.provision('theirs', 'provide')).rejects.toThrow(/ctl-b \(API 127\.0\.0\.1:7002\)/);
    expect(local.calls).toEqual([]);
  });
});
