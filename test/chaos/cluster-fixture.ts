/**
 * What the fencing and database-outage chaos tests share: a cluster of
 * controller processes on one database (secret key, NATS prefix and image
 * store shared), virtual nodes enrolled and available, an image uploaded,
 * and the consistency checks a run ends with. Everything it starts is ended
 * by close(), even when a test failed half-way.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { InstanceService, type Instance } from '../../proto/gen/bm/v1/instance_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import {
  createFlavor,
  enroll,
  freePort,
  freeUdpPort,
  LAB_FLAVOR,
  LAB_IMAGE,
  loopbackBootToml,
  provisionAll,
  sha256OfFilePrefix,
  startControllerProcess,
  uniqueNatsPrefix,
  uploadImage,
  VirtualNode,
  type ControllerProcess,
} from '../../controller/lab/index.ts';

const MIB = 1024 * 1024;

export interface ClusterOptions {
  readonly name: string;
  /** mysql://... of the cluster's database (its own name; the server may be a test's own). */
  readonly databaseUrl: (controllerId: string) => string;
  readonly controllers: readonly string[];
  readonly nodes: number;
  readonly imageMiB: number;
  readonly deadAfterS: number;
  /** Two hex digits that make this test's MACs its own. */
  readonly macTag: string;
}

export class ChaosCluster {
  readonly o: ClusterOptions;
  readonly dir: string;
  readonly controllers = new Map<string, ControllerProcess>();
  readonly machines: VirtualNode[] = [];
  readonly conns: RpcConnection[] = [];
  readonly say: string[] = [];
  imageSha = '';
  #env: Record<string, string> = {};
  #natsPrefix = uniqueNatsPrefix();
  #httpPorts = new Map<string, number>();

  private constructor(o: ClusterOptions, dir: string) {
    this.o = o;
    this.dir = dir;
  }

  static async start(o: ClusterOptions): Promise<ChaosCluster> {
    const c = new ChaosCluster(o, await mkdtemp(path.join(os.tmpdir(), `bm-${o.name}-`)));
    await mkdir(path.join(c.dir, 'images'), { recursive: true });
    c.#env = { BM_SECRETS_KEY: randomBytes(32).toString('base64'), BM_IMAGES_STORE_PATH: path.join(c.dir, 'images') };
    for (const id of o.controllers) await c.startController(id);
    return c;
  }

  async startController(id: string): Promise<ControllerProcess> {
    const httpPort = this.#httpPorts.get(id) ?? (await freePort());
    this.#httpPorts.set(id, httpPort);
    const toml = [
      '[controller]',
      `id = "${id}"`,
      'heartbeat_interval_ms = 500',
      `dead_after_s = ${this.o.deadAfterS}`,
      '[conductor]',
      'callback_timeout_s = 240',
      'poll_ms = 200',
      await loopbackBootToml({ dir: path.join(this.dir, `boot-${id}`), httpPort, tftpPort: await freeUdpPort() }),
    ].join('\n');
    const ctl = await startControllerProcess({
      databaseUrl: this.o.databaseUrl(id),
      env: this.#env,
      natsPrefix: this.#natsPrefix,
      logLevel: 'warn',
      extraToml: toml,
    });
    this.controllers.set(id, ctl);
    return ctl;
  }

  api(id: string): RpcConnection {
    const ctl = this.controllers.get(id)!;
    const conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
    this.conns.push(conn);
    return conn;
  }

  /** Image uploaded, nodes enrolled, managed and provided, the flavor made: ready for boots. */
  async prepare(via: string): Promise<void> {
    const api = this.api(via);
    const raw = path.join(this.dir, 'image.raw');
    const bytes = this.o.imageMiB * MIB;
    const handle = await open(raw, 'w');
    await handle.truncate(bytes);
    for (let mib = 0; mib < this.o.imageMiB; mib += 2) await handle.write(randomBytes(MIB), 0, MIB, mib * MIB);
    await handle.close();
    this.imageSha = await sha256OfFilePrefix(raw, bytes);
    await uploadImage(api, { file: raw, format: 'raw' });
    await createFlavor(api);
    const bootUrl = `http://127.0.0.1:${this.#httpPorts.get(via)}`;
    for (let i = 0; i < this.o.nodes; i++) {
      const m = new VirtualNode({
        name: `${this.o.name}-${i + 1}`,
        mac: `52:54:00:1f:${this.o.macTag}:${(i + 1).toString(16).padStart(2, '0')}`,
        bmcPassword: `${this.o.name}-bmc-secret`,
        diskBytes: bytes + 64 * MIB,
        dir: path.join(this.dir, `m${i + 1}`),
        bootUrl,
        say: (msg) => this.say.push(`${new Date().toISOString()} ${msg}`),
      });
      await m.start();
      this.machines.push(m);
    }
    await enroll(
      api,
      this.machines.map((m) => ({
        name: m.o.name,
        mac: m.o.mac,
        bmcAddress: m.bmc.address,
        bmcPort: m.bmc.port,
        bmcUser: 'admin',
        bmcPassword: m.o.bmcPassword,
        cpus: 8,
        memoryMb: 16384,
        diskGb: 1,
        disk: m.disk,
      })),
    );
    const names = this.machines.map((m) => m.o.name);
    await provisionAll(api, names, 'manage', 'manageable', 120_000);
    await provisionAll(api, names, 'provide', 'available', 180_000);
  }

  /** Creates the instances; their deploys run on whichever controller claims them. */
  async boot(via: string, count: number): Promise<Instance[]> {
    const api = this.api(via).client(InstanceService);
    return Promise.all(
      Array.from({ length: count }, (_, i) =>
        api.createInstance({ name: `${this.o.name}-vm-${i + 1}`, flavor: LAB_FLAVOR, image: LAB_IMAGE }),
      ),
    );
  }

  /** The instances as one controller sees them now; an API call that fails (the database is away) answers null. */
  async instances(via: RpcConnection, uuids: readonly string[]): Promise<Instance[] | null> {
    try {
      return await Promise.all(uuids.map((id) => via.client(InstanceService).getInstance({ id }, { timeoutMs: 3000 })));
    } catch {
      return null;
    }
  }

  async waitSettled(via: RpcConnection, uuids: readonly string[], timeoutMs: number): Promise<Instance[]> {
    const deadline = Date.now() + timeoutMs;
    let last: Instance[] = [];
    while (Date.now() < deadline) {
      const now = await this.instances(via, uuids);
      if (now) {
        last = now;
        if (now.every((i) => i.state !== 'BUILD')) return now;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    return last;
  }

  /** Rows that must never exist, whatever was cut off when: each a description of what is wrong. */
  async inconsistencies(url: string): Promise<string[]> {
    const conn = await mysql.createConnection(url);
    try {
      const wrong: string[] = [];
      const q = async (what: string, sql: string): Promise<void> => {
        const [rows] = await conn.query<mysql.RowDataPacket[]>(sql);
        for (const r of rows) wrong.push(`${what}: ${JSON.stringify(r)}`);
      };
      await q(
        'instance on a node that does not exist',
        'SELECT i.uuid, i.node_uuid FROM instances i LEFT JOIN nodes n ON n.uuid = i.node_uuid WHERE i.node_uuid IS NOT NULL AND n.uuid IS NULL',
      );
      await q(
        'node naming a missing instance',
        'SELECT n.uuid, n.instance_uuid FROM nodes n LEFT JOIN instances i ON i.uuid = n.instance_uuid WHERE n.instance_uuid IS NOT NULL AND i.uuid IS NULL',
      );
      await q(
        'instance and node disagree',
        'SELECT i.uuid, i.node_uuid, n.instance_uuid FROM instances i JOIN nodes n ON n.uuid = i.node_uuid WHERE NOT (n.instance_uuid <=> i.uuid)',
      );
      await q(
        'active instance on a node that is not active',
        "SELECT i.uuid, n.provision_state FROM instances i JOIN nodes n ON n.uuid = i.node_uuid WHERE i.state = 'ACTIVE' AND n.provision_state <> 'active'",
      );
      await q('node still reserved after the run', 'SELECT uuid, reservation FROM nodes WHERE reservation IS NOT NULL');
      await q(
        'node in a transient state after the run',
        "SELECT uuid, provision_state FROM nodes WHERE provision_state IN ('deploying','wait-callback','cleaning','deleting','verifying')",
      );
      return wrong;
    } finally {
      await conn.end();
    }
  }

  /** Each machine that got an instance holds the image's bytes. */
  async disksWithImage(): Promise<number> {
    let n = 0;
    for (const m of this.machines) if ((await sha256OfFilePrefix(m.disk, this.o.imageMiB * MIB)) === this.imageSha) n++;
    return n;
  }

  logs(): string {
    return [...this.controllers.entries()].map(([id, c]) => `--- ${id}\n${c.logs().slice(-6000)}`).join('\n') + `\n${this.say.join('\n')}`;
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.close();
    for (const m of this.machines) await m.stop().catch(() => undefined);
    const all = [...this.controllers.values()];
    // Every controller but the last keeps the database: they share it; the last drops it.
    for (const [i, c] of all.entries()) await c.stop({ keepDatabase: i < all.length - 1 }).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}
