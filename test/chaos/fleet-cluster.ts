/**
 * A cluster for the chaos tests and the takeover benchmark: controllers that
 * share one database, NATS prefix, secret key and image directory (as a NATS
 * object store or NFS would share it), and virtual machines that network-boot
 * from one member's HTTP server (the member a test never stops: on a real L2
 * segment every member serves DHCP and boot scripts, on loopback only the one
 * the machines are told about does). Every deploy event of the cluster is
 * recorded from NATS, with the controller that published it.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { status } from '@grpc/grpc-js';
import { connect as connectNats, type NatsConnection } from '@nats-io/transport-node';
import { dropDatabase } from '../../db/migrate.ts';
import { EventSchema } from '../../proto/gen/bm/v1/event_pb.js';
import { FlavorService } from '../../proto/gen/bm/v1/flavor_pb.js';
import { InstanceService, type Instance } from '../../proto/gen/bm/v1/instance_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import {
  bundleAgent,
  type ControllerProcess,
  freePort,
  freeUdpPort,
  loopbackBootToml,
  natsUrl,
  provisionAll,
  sha256OfFilePrefix,
  StartLimiter,
  startControllerProcess,
  uniqueDatabaseUrl,
  uniqueNatsPrefix,
  uploadImage,
  VirtualNode,
} from '../../controller/lab/index.ts';

const MIB = 1024 * 1024;

export interface ClusterOptions {
  readonly name: string;
  readonly deadAfterS: number;
  /** The controllers' heartbeat interval; their default when absent. */
  readonly heartbeatMs?: number;
  readonly say: (message: string) => void;
}

/** One deploy event as NATS carried it. */
export interface SeenEvent {
  readonly type: string;
  readonly nodeUuid: string;
  readonly controllerId: string;
  readonly details: Readonly<Record<string, string>>;
  /** performance.now() when it arrived. */
  readonly at: number;
}

export interface ClusterImage {
  readonly name: string;
  readonly bytes: number;
  readonly dataBytes: number;
  readonly sha256: string;
}

export class ChaosCluster {
  readonly o: ClusterOptions;
  readonly controllers = new Map<string, ControllerProcess>();
  readonly machines: VirtualNode[] = [];
  readonly events: SeenEvent[] = [];
  readonly #conns = new Map<string, RpcConnection>();
  #dir = '';
  #env: Record<string, string> = {};
  #databaseUrl = '';
  #natsPrefix = '';
  #bootHttpPort = 0;
  #nc: NatsConnection | null = null;

  constructor(o: ClusterOptions) {
    this.o = o;
  }

  get dir(): string {
    return this.#dir;
  }

  get natsPrefix(): string {
    return this.#natsPrefix;
  }

  /** The shared settings, the event recorder, and the first controller (the one the machines boot from). */
  async start(bootControllerId: string): Promise<ControllerProcess> {
    this.#dir = await mkdtemp(path.join(os.tmpdir(), `bm-${this.o.name}-`));
    await mkdir(path.join(this.#dir, 'images'), { recursive: true });
    this.#env = { BM_SECRETS_KEY: randomBytes(32).toString('base64'), BM_IMAGES_STORE_PATH: path.join(this.#dir, 'images') };
    this.#databaseUrl = uniqueDatabaseUrl(`bm_${this.o.name}`);
    this.#natsPrefix = uniqueNatsPrefix();
    this.#nc = await connectNats({ servers: natsUrl });
    // Nodes' events and the controllers' (joined, left, found dead).
    const sub = this.#nc.subscribe(`${this.#natsPrefix}.events.>`);
    void (async () => {
      for await (const msg of sub) {
        const e = fromBinary(EventSchema, msg.data);
        this.events.push({ type: e.type, nodeUuid: e.nodeUuid, controllerId: e.controllerId, details: e.details, at: performance.now() });
      }
    })();
    await this.#nc.flush();
    this.#bootHttpPort = await freePort();
    return this.addController(bootControllerId, this.#bootHttpPort);
  }

  async addController(id: string, httpPort?: number): Promise<ControllerProcess> {
    const bootDir = path.join(this.#dir, `boot-${id}`);
    const c = await startControllerProcess({
      databaseUrl: this.#databaseUrl,
      env: this.#env,
      natsPrefix: this.#natsPrefix,
      logLevel: 'warn',
      extraToml: [
        '[controller]',
        `id = "${id}"`,
        ...(this.o.heartbeatMs ? [`heartbeat_interval_ms = ${this.o.heartbeatMs}`] : []),
        `dead_after_s = ${this.o.deadAfterS}`,
        '[conductor]',
        'callback_timeout_s = 600',
        'poll_ms = 200',
        '[power]',
        'call_timeout_s = 5',
        'settle_timeout_s = 30',
        await loopbackBootToml({ dir: bootDir, httpPort: httpPort ?? (await freePort()), tftpPort: await freeUdpPort() }),
      ].join('\n'),
    });
    this.controllers.set(id, c);
    return c;
  }

  api(id: string): RpcConnection {
    let conn = this.#conns.get(id);
    if (!conn) {
      const c = this.controllers.get(id);
      if (!c) throw new Error(`no controller ${id} in this cluster`);
      conn = connect(c.url, { metadata: { authorization: `Bearer ${c.token}` } });
      this.#conns.set(id, conn);
    }
    return conn;
  }

  /** SIGKILL, as a crash or a power cut: nothing is handed over. */
  async kill(id: string): Promise<void> {
    const c = this.controllers.get(id);
    if (!c) throw new Error(`no controller ${id} in this cluster`);
    process.kill(c.pid, 'SIGKILL');
    await this.#forget(id, c);
  }

  /** SIGTERM, as a rolling restart: the controller hands its work over before it exits. */
  async terminate(id: string): Promise<number | null> {
    const c = this.controllers.get(id);
    if (!c) throw new Error(`no controller ${id} in this cluster`);
    return this.#forget(id, c);
  }

  async #forget(id: string, c: ControllerProcess): Promise<number | null> {
    this.#conns.get(id)?.close();
    this.#conns.delete(id);
    this.controllers.delete(id);
    // The database is the cluster's: the last controller drops it in stop().
    return c.stop({ keepDatabase: true });
  }

  /** A raw image of `bytes` with random data everywhere but one hole in the middle, uploaded through `via`. */
  async uploadImage(via: string, name: string, bytes: number): Promise<ClusterImage> {
    const raw = path.join(this.#dir, `${name}.raw`);
    const handle = await open(raw, 'w');
    let dataBytes = 0;
    try {
      await handle.truncate(bytes);
      const hole = { from: Math.floor(bytes / MIB / 2), to: Math.floor(bytes / MIB / 2) + Math.floor(bytes / MIB / 8) };
      for (let mib = 0; mib < bytes / MIB; mib++) {
        if (mib >= hole.from && mib < hole.to) continue;
        await handle.write(randomBytes(MIB), 0, MIB, mib * MIB);
        dataBytes += MIB;
      }
    } finally {
      await handle.close();
    }
    await uploadImage(this.api(via), { file: raw, format: 'raw' }, name);
    const sha256 = await sha256OfFilePrefix(raw, bytes);
    await rm(raw, { force: true });
    return { name, bytes, dataBytes, sha256 };
  }

  /** `count` machines enrolled, managed and provided through `via`, and a flavor matching them. */
  async addMachines(via: string, count: number, diskBytes: number): Promise<void> {
    const agentScript = await bundleAgent(this.#dir, this.o.say);
    const starts = new StartLimiter(2 * os.availableParallelism());
    const nodes = this.api(via).client(NodeService);
    for (let i = 0; i < count; i++) {
      const name = `${this.o.name}-${String(i).padStart(3, '0')}`;
      const m = new VirtualNode({
        name,
        mac: `52:54:0c:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`,
        bmcPassword: randomBytes(9).toString('base64url'),
        diskBytes,
        dir: path.join(this.#dir, 'machines', name),
        bootUrl: `http://127.0.0.1:${this.#bootHttpPort}`,
        say: (msg) => (/failed|did not/.test(msg) ? this.o.say(msg) : undefined),
        starts,
        ...(agentScript ? { agentScript, agentCompileCache: path.join(this.#dir, 'agent/compile-cache') } : {}),
      });
      await m.start();
      this.machines.push(m);
      await nodes.createNode({
        name,
        pmAddress: m.bmc.address,
        pmPort: m.bmc.port,
        pmUser: 'admin',
        pmPassword: m.o.bmcPassword,
        cpus: 2,
        memoryMb: 2048,
        localGb: 1,
        cpuArch: 'x86_64',
        mac: m.o.mac,
      });
    }
    const names = this.machines.map((m) => m.o.name);
    await provisionAll(this.api(via), names, 'manage', 'manageable', 300_000);
    await provisionAll(this.api(via), names, 'provide', 'available', 600_000);
    await this.api(via).client(FlavorService).createFlavor({ name: 'chaos', ramMb: 1024, diskGb: 1, cpus: 1 });
  }

  /** Creates `count` instances at once, spread over `via` in turn. */
  async boot(via: readonly string[], prefix: string, count: number, image: string): Promise<Instance[]> {
    return Promise.all(
      Array.from({ length: count }, (_, i) =>
        this.api(via[i % via.length]!)
          .client(InstanceService)
          .createInstance({ name: `${prefix}-${String(i).padStart(2, '0')}`, flavor: 'chaos', image }),
      ),
    );
  }

  /** Polls through `via` until none of `uuids` is in BUILD (or DELETING), or the time is up. */
  async settle(via: string, uuids: readonly string[], timeoutMs: number): Promise<Instance[]> {
    const api = this.api(via).client(InstanceService);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const all = await Promise.all(uuids.map((id) => api.getInstance({ id })));
      if (all.every((i) => i.state !== 'BUILD') || Date.now() > deadline) return all;
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /**
   * Waits until one of `controllers` streams at least `streams` images at
   * once and has reported a checkpoint of one of them short of `imageBytes`:
   * it is mid-stream, with work a takeover must not redo. Returns that one.
   * (Each deploy runs on its node's hash-ring owner, so which controller
   * streams the most is the ring's choice, not the test's.)
   */
  async midStream(
    controllers: readonly string[],
    since: number,
    o: { readonly streams: number; readonly committed: number; readonly imageBytes: number; readonly timeoutMs: number },
  ): Promise<string> {
    const deadline = Date.now() + o.timeoutMs;
    while (Date.now() < deadline) {
      for (const controller of controllers) {
        const streaming = this.streamingOn(controller, since);
        const checkpointed = this.events.some(
          (e) =>
            e.at >= since &&
            e.type === 'deploy.progress' &&
            e.controllerId === controller &&
            streaming.has(e.nodeUuid) &&
            Number(e.details.committed) >= o.committed &&
            Number(e.details.committed) < o.imageBytes,
        );
        if (checkpointed && streaming.size >= o.streams) return controller;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const counts = controllers.map((c) => `${c}: ${this.streamingOn(c, since).size}`).join(', ');
    throw new Error(
      `none of ${counts} (streams now) streamed ${o.streams} images with one past a checkpoint within ${o.timeoutMs / 1000} s`,
    );
  }

  /** Nodes whose image `controller` is streaming: their agent called back to it (or it resumed them) and the image is not written yet. */
  streamingOn(controller: string, since: number): Set<string> {
    const streaming = new Set<string>();
    for (const e of this.events) {
      if (e.at < since || e.controllerId !== controller) continue;
      const begins =
        (e.type === 'provision.changed' && e.details.event === 'resume') || e.type === 'deploy.resumed' || e.type === 'deploy.progress';
      if (begins) streaming.add(e.nodeUuid);
      if (e.type === 'deploy.written') streaming.delete(e.nodeUuid);
    }
    return streaming;
  }

  /** The machine behind a node of the API. */
  async machineOf(via: string, nodeUuid: string): Promise<VirtualNode> {
    const node = await this.api(via).client(NodeService).getNode({ id: nodeUuid });
    const m = this.machines.find((x) => x.o.name === node.name);
    if (!m) throw new Error(`node ${nodeUuid} (${node.name}) is no machine of this cluster`);
    return m;
  }

  /**
   * Deletes the instances and waits until every machine is back in the pool. A delete refused because
   * the node is locked (ABORTED: a task still ending) is asked again, as an operator's script would;
   * if the lock outlives the wait, the error says who holds it and the controllers' last log lines.
   */
  async deleteAll(via: string, uuids: readonly string[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const instances = this.api(via).client(InstanceService);
    const remove = async (id: string): Promise<void> => {
      // A task ends in seconds; a lock held a minute is a leak, worth failing on.
      const lockDeadline = Math.min(deadline, Date.now() + 60_000);
      for (;;) {
        try {
          await instances.deleteInstance({ id });
          return;
        } catch (err) {
          if ((err as { code?: number }).code !== status.ABORTED || Date.now() > lockDeadline) {
            const logs = [...this.controllers.entries()].map(([cid, c]) => `--- ${cid}\n${c.logs().slice(-3000)}`);
            throw new Error(`delete of instance ${id}: ${(err as Error).message}\n${logs.join('\n')}`);
          }
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    };
    await Promise.all(uuids.map(remove));
    const nodes = this.api(via).client(NodeService);
    for (;;) {
      const states = await Promise.all(this.machines.map((m) => nodes.getNode({ id: m.o.name }).then((n) => n.provisionState)));
      if (states.every((s) => s === 'available')) return;
      if (Date.now() > deadline) throw new Error(`machines not back in the pool: ${[...new Set(states)].join(', ')}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async stop(): Promise<void> {
    for (const conn of this.#conns.values()) conn.close();
    this.#conns.clear();
    await this.#nc?.close().catch(() => undefined);
    await Promise.all(this.machines.map((m) => m.stop().catch(() => undefined)));
    const left = [...this.controllers.values()];
    this.controllers.clear();
    for (const [i, c] of left.entries()) await c.stop({ keepDatabase: i < left.length - 1 }).catch(() => undefined);
    if (left.length === 0 && this.#databaseUrl) await dropDatabase(this.#databaseUrl).catch(() => undefined);
    if (this.#dir) await rm(this.#dir, { recursive: true, force: true });
  }
}
