/**
 * What an operator does to a fresh lab, and only through the controller's
 * gRPC API (DESIGN.md: the CLI never reads the database): upload an image,
 * enroll the machines, verify their BMCs (manage), clean them into the pool
 * (provide), create a flavor, boot instances and follow them to ACTIVE. The
 * controller drives every deploy; nothing of a deploy happens here.
 */
import { createReadStream } from 'node:fs';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { EventService } from '../../proto/gen/bm/v1/event_pb.js';
import { FlavorService } from '../../proto/gen/bm/v1/flavor_pb.js';
import { ImageService, type CreateImageRequestSchema, type Image } from '../../proto/gen/bm/v1/image_pb.js';
import { InstanceService, type Instance } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService, type Node } from '../../proto/gen/bm/v1/node_pb.js';
import type { RpcConnection } from '../../proto/rpc/index.ts';
import { isTransientState } from '../conductor/index.ts';
import { BmError } from '../errors.ts';
import type { LabImage, LabMachine } from './fleet.ts';

const CHUNK = 1024 * 1024;
export const LAB_IMAGE = 'lab-image';
export const LAB_FLAVOR = 'lab-small';

/** A step of the lab that did not end where it should: which one, on what, and why. */
export class LabStepError extends BmError {
  constructor(step: string, subject: string, detail: string) {
    super('failed-precondition', `${step} ${subject}: ${detail}`, { step, subject });
  }
}

export const instanceName = (i: number): string => `lab-vm-${String(i + 1).padStart(3, '0')}`;

export async function uploadImage(conn: RpcConnection, image: LabImage, name = LAB_IMAGE): Promise<Image> {
  async function* requests(): AsyncIterable<MessageInitShape<typeof CreateImageRequestSchema>> {
    yield { part: { case: 'meta', value: { name, diskFormat: image.format } } };
    for await (const chunk of createReadStream(image.file, { highWaterMark: CHUNK }))
      yield { part: { case: 'chunk', value: chunk as Buffer } };
  }
  return conn.client(ImageService).createImage(requests(), { timeoutMs: 300_000 });
}

export async function enroll(conn: RpcConnection, machines: readonly LabMachine[]): Promise<Node[]> {
  const nodes = conn.client(NodeService);
  const out: Node[] = [];
  for (const m of machines) {
    out.push(
      await nodes.createNode({
        name: m.name,
        pmAddress: m.bmcAddress,
        pmPort: m.bmcPort,
        pmUser: m.bmcUser,
        pmPassword: m.bmcPassword,
        cpus: m.cpus,
        memoryMb: m.memoryMb,
        localGb: m.diskGb,
        cpuArch: 'x86_64',
        mac: m.mac,
      }),
    );
  }
  return out;
}

/**
 * Runs a provision verb on every node at once and waits until each leaves the
 * transient states in `want`. A node is read again when an event says its
 * provision state settled, and every `pollMs` (default 2 s) in case an event
 * was missed: reading every node each 250 ms was about half of the 500
 * statements a second the controller ran while it cleaned a lab of 50
 * (docs/performance-notes.md).
 */
export async function provisionAll(
  conn: RpcConnection,
  names: readonly string[],
  verb: 'manage' | 'provide',
  want: string,
  timeoutMs: number,
  pollMs = 2000,
): Promise<void> {
  const nodes = conn.client(NodeService);
  const watch = new AbortController();
  /** Nodes an event said settled since they were last read, and the wake-up of each node waiting. */
  const settled = new Set<string>();
  const waiting = new Map<string, () => void>();
  const watching = (async () => {
    try {
      for await (const e of conn.client(EventService).watch({}, { signal: watch.signal })) {
        if (e.type !== 'provision.changed' || isTransientState(e.provisionState)) continue;
        settled.add(e.nodeUuid);
        waiting.get(e.nodeUuid)?.();
      }
    } catch {
      // The poll decides; a broken watch only makes the waits longer.
    }
  })();
  const changeOf = (uuid: string): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        waiting.delete(uuid);
        resolve();
      };
      const timer = setTimeout(done, pollMs);
      waiting.set(uuid, done);
      if (settled.has(uuid)) done();
    });
  try {
    await Promise.all(
      names.map(async (id) => {
        let n = await nodes.provision({ id, verb });
        const deadline = Date.now() + timeoutMs;
        while (isTransientState(n.provisionState) && Date.now() < deadline) {
          await changeOf(n.uuid);
          settled.delete(n.uuid);
          n = await nodes.getNode({ id: n.uuid });
        }
        if (n.provisionState !== want)
          throw new LabStepError(`node ${verb}`, id, `ended in ${n.provisionState}${n.lastError ? `: ${n.lastError}` : ''}`);
      }),
    );
  } finally {
    watch.abort();
    await watching;
  }
}

export async function createFlavor(conn: RpcConnection): Promise<void> {
  await conn.client(FlavorService).createFlavor({ name: LAB_FLAVOR, ramMb: 16384, diskGb: 1, cpus: 8 });
}

export interface BootOutcome {
  readonly instance: Instance;
  /** From the boot call to ACTIVE (or ERROR), as this client saw it. */
  readonly ms: number;
}

export type ProgressListener = (instances: readonly Instance[]) => void;

const FINAL = new Set(['ACTIVE', 'ERROR']);

/**
 * Boots the named instances at once and follows them until each is ACTIVE or
 * ERROR. The controller's events (EventService.Watch) say when an instance
 * goes ACTIVE, confirmed by reading that instance; the instance list, read
 * every `pollMs` (default 1 s), drives `onProgress` and catches what no event
 * names (ERROR, an event missed). The list reads every instance's node:
 * polled every 50 ms during 50 deploys it was over half the controller's
 * database statements, and timed an instance only as finely as the list
 * came back (docs/performance-notes.md).
 */
export async function bootAll(
  conn: RpcConnection,
  names: readonly string[],
  o: { readonly userData?: Uint8Array; readonly timeoutMs: number; readonly pollMs?: number; readonly onProgress?: ProgressListener },
): Promise<BootOutcome[]> {
  const api = conn.client(InstanceService);
  const pollMs = o.pollMs ?? 1000;
  const watch = new AbortController();
  /** When an event said each instance went ACTIVE (this client's clock), in arrival order. */
  const activeAt = new Map<string, number>();
  const named: string[] = [];
  let wake: (() => void) | undefined;
  const watching = (async () => {
    try {
      for await (const e of conn.client(EventService).watch({}, { signal: watch.signal })) {
        const uuid = e.details.instance;
        if (e.type !== 'instance.active' || !uuid || activeAt.has(uuid)) continue;
        activeAt.set(uuid, performance.now());
        named.push(uuid);
        wake?.();
      }
    } catch {
      // The list decides; a broken watch only makes the times coarser.
    }
  })();
  try {
    const started = performance.now();
    const created = await Promise.all(
      names.map((name) => api.createInstance({ name, flavor: LAB_FLAVOR, image: LAB_IMAGE, userData: o.userData ?? new Uint8Array() })),
    );
    const mine = new Set(created.map((i) => i.uuid));
    const done = new Map<string, BootOutcome>();
    const settle = (i: Instance, seenAt: number): void => {
      if (FINAL.has(i.state) && !done.has(i.uuid)) done.set(i.uuid, { instance: i, ms: (activeAt.get(i.uuid) ?? seenAt) - started });
    };
    const deadline = started + o.timeoutMs;
    let nextList = 0;
    for (;;) {
      for (const uuid of named.splice(0))
        if (mine.has(uuid) && !done.has(uuid)) settle(await api.getInstance({ id: uuid }), performance.now());
      const now = performance.now();
      if (now >= nextList || done.size === created.length) {
        const { instances } = await api.listInstances({});
        const current = instances.filter((i) => mine.has(i.uuid));
        const seenAt = performance.now();
        for (const i of current) settle(i, seenAt);
        o.onProgress?.(current);
        nextList = seenAt + pollMs;
        if (done.size === created.length) break;
      }
      if (performance.now() > deadline)
        throw new LabStepError('boot', `${created.length - done.size} instance(s)`, `not ACTIVE within ${o.timeoutMs / 1000} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, nextList - performance.now()));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
        if (named.length > 0) wake();
      });
      wake = undefined;
    }
    return created.map((c) => done.get(c.uuid)!);
  } finally {
    watch.abort();
    await watching;
  }
}
