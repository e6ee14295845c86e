/**
 * What a MAC boots, from MySQL: a deploy boots the deploy kernel and ramdisk
 * its flavor names (baremetal:deploy_kernel_id / _ramdisk_id), else the
 * defaults; the armed agent token is handed out once; a peek hands none out.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../../db/connect.ts';
import { dropDatabase, syncDatabase } from '../../db/migrate.ts';
import { MysqlAgentTokens } from '../../controller/agents/tokens.ts';
import { MysqlBootStateSource } from '../../controller/conductor/boot-state.ts';
import { MysqlNodeStore } from '../../controller/nodes/mysql-store.ts';
import { SecretBox } from '../../controller/secrets/secret-box.ts';
import { uniqueDatabaseUrl } from '../../controller/lab/index.ts';

const url = uniqueDatabaseUrl('bm_bootstate');
let db: DbHandle;
const NODE = '01a20000-0000-7000-8000-0000000000b1';
const MAC = '52:54:00:b5:00:01';
const INSTANCE = '01a20000-0000-7000-8000-0000000000c1';
const FLAVOR = '01a20000-0000-7000-8000-0000000000f1';

beforeAll(async () => {
  await syncDatabase(url);
  db = await openDatabase(url, { connectionLimit: 2 });
  await db.pool.query(
    "INSERT INTO nodes (uuid, cpus, memory_mb, local_gb, cpu_arch, pm_address, pm_user, properties, provision_state, instance_uuid) VALUES (?, 1, 1024, 10, 'x86_64', '192.0.2.1', 'admin', '{}', 'wait-callback', ?)",
    [NODE, INSTANCE],
  );
  await db.pool.query('INSERT INTO ports (uuid, node_uuid, address) VALUES (?, ?, ?)', ['01a20000-0000-7000-8000-0000000000d1', NODE, MAC]);
  await db.pool.query("INSERT INTO flavors (uuid, name, ram_mb, disk_gb, cpus, extra_specs) VALUES (?, 'f', 1, 1, 1, ?)", [
    FLAVOR,
    JSON.stringify({ cpu_arch: 'x86_64', 'baremetal:deploy_kernel_id': 'kernel-2', 'baremetal:deploy_ramdisk_id': 'ramdisk-2' }),
  ]);
  await db.pool.query(
    "INSERT INTO instances (uuid, name, project, flavor_uuid, image_uuid, node_uuid, state, ssh_keys, network) VALUES (?, 'vm', 'p', ?, ?, ?, 'BUILD', '[]', '{\"mode\":\"dhcp\"}')",
    [INSTANCE, FLAVOR, FLAVOR, NODE],
  );
});

afterAll(async () => {
  await db?.close();
  await dropDatabase(url);
});

describe('MysqlBootStateSource', () => {
  it("boots the flavor's deploy kernel and ramdisk, and hands the armed token out once", async () => {
    const tokens = new MysqlAgentTokens(db.db, new SecretBox(randomBytes(32)));
    const source = new MysqlBootStateSource(new MysqlNodeStore(db.db), tokens, db.db);
    const armed = await tokens.issue(NODE, 60_000);
    const peek = await source.bootStateFor(MAC, { peek: true });
    expect(peek).toMatchObject({ provisionState: 'deploying', deployKernel: 'kernel-2', deployRamdisk: 'ramdisk-2' });
    expect(peek?.agentToken).not.toBe(armed);
    expect((await source.bootStateFor(MAC))?.agentToken).toBe(armed);
    expect((await source.bootStateFor(MAC))?.agentToken).toBeNull();
    // The token still works after a second fetch: it revoked nothing.
    expect(await tokens.verify(NODE, armed)).toBe(true);
    // Without those keys, the configured defaults (null here).
    await db.pool.query('UPDATE flavors SET extra_specs = \'{"cpu_arch":"x86_64"}\'');
    expect(await source.bootStateFor(MAC, { peek: true })).toMatchObject({ deployKernel: null, deployRamdisk: null });
  });
});
