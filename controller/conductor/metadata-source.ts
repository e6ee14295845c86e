/**
 * The metadata service's view of the database: which instance a source
 * address belongs to (a bound DHCP lease of one of its node's ports, or its
 * static address) and that instance's cloud-init documents.
 */
import { and, eq, gt, inArray, sql } from 'drizzle-orm';
import { type Database, dhcpLeases, instances, nodes, ports } from '../../db/index.ts';
import type { InstanceDocuments, MetadataSource } from '../boot/index.ts';
import { metaDataJson, networkDataJson, type InstanceStore, type InstanceRecord } from '../instances/index.ts';
import type { NodeStore } from '../nodes/index.ts';

/** Instances past scheduling whose OS may ask (cloud-init runs on the first boot from disk). */
const SERVED_STATES = ['BUILD', 'ACTIVE'];

export class MysqlMetadataSource implements MetadataSource {
  readonly #db: Database;
  readonly #instances: InstanceStore;
  readonly #nodes: NodeStore;

  constructor(db: Database, instanceStore: InstanceStore, nodeStore: NodeStore) {
    this.#db = db;
    this.#instances = instanceStore;
    this.#nodes = nodeStore;
  }

  async #instanceAt(address: string): Promise<InstanceRecord | null> {
    const [leased] = await this.#db
      .select({ uuid: nodes.instanceUuid })
      .from(dhcpLeases)
      .innerJoin(ports, eq(ports.address, dhcpLeases.mac))
      .innerJoin(nodes, eq(nodes.uuid, ports.nodeUuid))
      .where(
        and(eq(dhcpLeases.ip, sql`INET_ATON(${address})`), eq(dhcpLeases.state, 'bound'), gt(dhcpLeases.expiresAt, sql`${new Date()}`)),
      )
      .limit(1);
    const uuid =
      leased?.uuid ??
      (
        await this.#db
          .select({ uuid: instances.uuid })
          .from(instances)
          .where(and(eq(instances.address, address), inArray(instances.state, SERVED_STATES)))
          .limit(1)
      )[0]?.uuid;
    if (!uuid) return null;
    const instance = await this.#instances.find(uuid, null);
    return instance && SERVED_STATES.includes(instance.state) ? instance : null;
  }

  async documentsFor(address: string): Promise<InstanceDocuments | null> {
    const instance = await this.#instanceAt(address);
    if (!instance?.nodeUuid) return null;
    const node = await this.#nodes.findNode(instance.nodeUuid);
    if (!node) return null;
    const cloudNode = { uuid: node.uuid, group: node.group, macs: node.macs };
    return {
      instanceUuid: instance.uuid,
      hostname: instance.name,
      localIpv4: address,
      publicKeys: instance.sshKeys,
      metaDataJson: metaDataJson(instance, cloudNode),
      networkDataJson: networkDataJson(instance, cloudNode),
      userData: instance.userData,
    };
  }
}
