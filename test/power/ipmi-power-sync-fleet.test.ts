/**
 * The power-state sync loop in a real controller process, with the native
 * driver (the default "ipmi"), against a fleet of virtual BMCs: some switched
 * off behind its back, some silent, some gone. States converge; failures are
 * reported on the nodes that fail.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { connect, type RpcConnection } from '../../proto/rpc/index.ts';
import { startControllerProcess, type ControllerProcess, startFleet, type VirtualFleet } from '../../controller/lab/index.ts';

const BMCS = 300;
const SILENT = 20;
const GONE = 10;

let fleet: VirtualFleet;
let ctl: ControllerProcess;
let conn: RpcConnection;

function mac(i: number): string {
  return `52:54:00:c1:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
}

beforeAll(async () => {
  fleet = await startFleet(BMCS, (i) => ({
    users: [{ name: 'admin', password: `fleet-pw-${i}`, privilege: 4 }],
    power: i % 3 === 0 ? 'on' : 'off',
  }));
  ctl = await startControllerProcess({
    logLevel: 'warn',
    extraToml: '[power]\nsync_interval_s = 1\nsync_failure_threshold = 2\ncall_timeout_s = 4\nsync_concurrency = 32',
  });
  conn = connect(ctl.url, { metadata: { authorization: `Bearer ${ctl.token}` } });
}, 120_000);

afterAll(async () => {
  conn?.close();
  await ctl?.stop();
  await fleet?.close();
});

describe('power sync over a fleet of virtual BMCs', () => {
  it('converges on what the BMCs say, follows changes made behind its back, and flags the unreachable', async () => {
    const nodes = conn.client(NodeService);
    const servers = fleet.servers;
    // The last SILENT BMCs stop answering; the GONE before them close their sockets.
    for (const s of servers.slice(BMCS - SILENT)) s.bmc.silent = true;
    const gone = servers.slice(BMCS - SILENT - GONE, BMCS - SILENT);
    await Promise.all(gone.map((s) => s.close()));
    const ids: string[] = [];
    for (let start = 0; start < BMCS; start += 25) {
      const batch = await Promise.all(
        servers.slice(start, start + 25).map((s, k) =>
          nodes.createNode({
            name: `fleet-${start + k}`,
            pmAddress: s.address,
            pmPort: s.port,
            pmUser: 'admin',
            pmPassword: `fleet-pw-${start + k}`,
            cpus: 1,
            memoryMb: 1,
            localGb: 1,
            cpuArch: 'x86_64',
            mac: mac(start + k),
          }),
        ),
      );
      ids.push(...batch.map((n) => n.uuid));
    }
    // `manage` verifies each BMC (enrolled nodes are not polled): the reachable
    // ones become manageable, the others verify-failed, and all are synced.
    for (let start = 0; start < BMCS; start += 50) {
      await Promise.all(ids.slice(start, start + 50).map((id) => nodes.provision({ id, verb: 'manage' })));
    }
    const reachable = BMCS - SILENT - GONE;
    const snapshot = async (): Promise<Map<string, { power: string; failures: number; lastError: string }>> => {
      const out = new Map<string, { power: string; failures: number; lastError: string }>();
      let marker = '';
      for (;;) {
        const page = await nodes.listNodes({ limit: 1000, marker });
        for (const n of page.nodes) out.set(n.uuid, { power: n.powerState, failures: n.powerSyncFailures, lastError: n.lastError });
        if (page.nodes.length < 1000) break;
        marker = page.nodes[page.nodes.length - 1]!.uuid;
      }
      return out;
    };
    const mismatches = async (): Promise<number> => {
      const now = await snapshot();
      let wrong = 0;
      for (let i = 0; i < reachable; i++) if (now.get(ids[i]!)?.power !== servers[i]!.bmc.power) wrong++;
      return wrong;
    };
    await expect.poll(mismatches, { timeout: 40_000, interval: 1000 }).toBe(0);

    // A person switches 30 machines at the console: the next sweeps see it.
    for (let i = 0; i < 30; i++) servers[i * 7]!.bmc.setPower(servers[i * 7]!.bmc.power === 'on' ? 'off' : 'on');
    await expect.poll(mismatches, { timeout: 30_000, interval: 1000 }).toBe(0);

    const flagged = async (): Promise<number> => {
      const now = await snapshot();
      return ids.slice(reachable).filter((id) => (now.get(id)?.failures ?? 0) >= 2).length;
    };
    await expect.poll(flagged, { timeout: 40_000, interval: 1000 }).toBe(SILENT + GONE);
    const now = await snapshot();
    for (let i = reachable; i < BMCS; i++) {
      const node = now.get(ids[i]!)!;
      expect(node.lastError).toMatch(new RegExp(`^power sync failing: BMC 127\\.0\\.0\\.1:${servers[i]!.port} .*did not answer`));
    }
    // The healthy ones carry no failure.
    expect(ids.slice(0, reachable).filter((id) => now.get(id)!.failures > 0)).toEqual([]);
    // Sessions are reused between sweeps, not opened per read: far fewer sessions than reads.
    const opened = servers.slice(0, reachable).reduce((a, s) => a + s.bmc.stats.sessionsOpened, 0);
    const reads = servers.slice(0, reachable).reduce((a, s) => a + s.bmc.stats.answered, 0);
    expect(opened).toBeLessThan(reads / 3);
  }, 150_000);
});
