/**
 * Two controller clusters on one NATS server, each with its own subject
 * prefix: bmctl watch (through the API) and a raw NATS subscriber each see
 * only their own cluster's events.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBinary } from '@bufbuild/protobuf';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { EventSchema } from '../../proto/gen/bm/v1/event_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect } from '../../proto/rpc/index.ts';
import {
  bmctlPath,
  natsUrl,
  repoRoot,
  startControllerProcess,
  uniqueNatsPrefix,
  type ControllerProcess,
} from '../../controller/lab/index.ts';

let a: ControllerProcess;
let b: ControllerProcess;
let nc: NatsConnection;

beforeAll(async () => {
  [a, b] = await Promise.all([
    startControllerProcess({ natsPrefix: `${uniqueNatsPrefix()}.a`, logLevel: 'warn' }),
    startControllerProcess({ natsPrefix: uniqueNatsPrefix(), logLevel: 'warn' }),
  ]);
  nc = await natsConnect({ servers: natsUrl });
});

afterAll(async () => {
  await nc?.close();
  await Promise.all([a?.stop(), b?.stop()]);
});

async function createNode(ctl: ControllerProcess, name: string, mac: string): Promise<string> {
  const conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
  try {
    const node = await conn.client(NodeService).createNode({
      name,
      pmAddress: '192.0.2.30',
      pmUser: 'admin',
      pmPassword: 'Prefix-Pw-1',
      cpus: 1,
      memoryMb: 1024,
      localGb: 10,
      cpuArch: 'x86_64',
      mac,
    });
    return node.uuid;
  } finally {
    conn.close();
  }
}

describe('NATS subject prefix', () => {
  it("keeps each cluster's events to itself, for bmctl watch and for NATS subscribers", async () => {
    expect(a.natsPrefix).not.toBe(b.natsPrefix);
    const rawA: string[] = [];
    const rawB: string[] = [];
    const subA = nc.subscribe(`${a.natsPrefix}.>`);
    const subB = nc.subscribe(`${b.natsPrefix}.>`);
    void (async () => {
      // Heartbeats (JSON) share the prefix; only events are Event messages.
      for await (const m of subA)
        if (m.subject.includes('.events.node.')) rawA.push(`${m.subject} ${fromBinary(EventSchema, m.data).nodeUuid}`);
    })();
    void (async () => {
      for await (const m of subB)
        rawB.push(m.subject.includes('.events.node.') ? `${m.subject} ${fromBinary(EventSchema, m.data).nodeUuid}` : m.subject);
    })();
    await nc.flush();

    const watch = spawn(process.execPath, [bmctlPath, 'watch'], {
      cwd: repoRoot,
      env: { ...process.env, BM_URL: a.url, BM_TOKEN: a.token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let watched = '';
    watch.stdout.on('data', (d: Buffer) => (watched += d.toString()));
    try {
      // The watch subscribes once its stream is open; an event of A's proves it is.
      let uuidA = '';
      for (let i = 0; !watched.includes('node.created') && i < 20; i++) {
        uuidA = await createNode(a, `prefix-a-${i}`, `52:54:00:30:00:${(0x10 + i).toString(16)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(watched).toContain(`${uuidA} node.created`);
      const uuidB = await createNode(b, 'prefix-b', '52:54:00:30:01:01');
      const lastA = await createNode(a, 'prefix-a-last', '52:54:00:30:02:01');
      // A's later event arriving proves B's had its chance to arrive (NATS keeps one publisher's order; both come through one server).
      await expect.poll(() => watched, { timeout: 5000 }).toContain(`${lastA} node.created`);
      await expect.poll(() => rawB.join('\n'), { timeout: 5000 }).toContain(`${b.natsPrefix}.events.node.${uuidB} ${uuidB}`);
      await expect.poll(() => rawA.join('\n'), { timeout: 5000 }).toContain(`${a.natsPrefix}.events.node.${lastA} ${lastA}`);
      expect(watched).not.toContain(uuidB);
      expect(rawA.join('\n')).not.toContain(uuidB);
      expect(rawB.join('\n')).not.toContain(lastA);
      expect(rawB.every((l) => l.startsWith(`${b.natsPrefix}.events.node.`) || l.startsWith(`${b.natsPrefix}.controllers.`))).toBe(true);
    } finally {
      watch.kill('SIGINT');
      subA.unsubscribe();
      subB.unsubscribe();
    }
  });
});
