/**
 * Enrolling and changing nodes and ports: validation, password sealing,
 * storage and the event for every change, in that order, so an event is only
 * published for what was committed.
 */
import { BmError, NotFoundError, TooManyPortsError, ValidationError } from '../errors.ts';
import type { EventBus } from '../events/index.ts';
import type { SecretBox } from '../secrets/index.ts';
import { normalizeMac } from './mac.ts';
import type { NodeChanges, NodeStore } from './store.ts';
import { UNDELETABLE_STATES, type NodeRecord, type PortRecord } from './types.ts';
import { uuidv7 } from './uuid.ts';
import { MAX_PORTS_PER_NODE, validateCreate, validateId, validatePatch, type NodeCreateInput, type NodePatch } from './validate.ts';

export class Enrollment {
  readonly #store: NodeStore;
  readonly #events: EventBus;
  readonly #secrets: SecretBox;

  constructor(store: NodeStore, events: EventBus, secrets: SecretBox) {
    this.#store = store;
    this.#events = events;
    this.#secrets = secrets;
  }

  async getNode(id: string): Promise<NodeRecord> {
    const node = await this.#store.findNode(validateId(id));
    if (!node) throw new NotFoundError('node', id);
    return node;
  }

  async createNode(input: NodeCreateInput): Promise<NodeRecord> {
    const valid = validateCreate(input);
    const mac = normalizeMac(valid.mac);
    const uuid = uuidv7();
    const node = await this.#store.createNode(
      {
        uuid,
        name: valid.name,
        group: valid.group,
        cpus: valid.cpus,
        memoryMb: valid.memoryMb,
        localGb: valid.localGb,
        cpuArch: valid.cpuArch,
        pmAddress: valid.pmAddress,
        pmPort: valid.pmPort,
        pmUser: valid.pmUser,
        pmPasswordEnc: this.#secrets.encrypt(valid.pmPassword, uuid),
        powerDriver: valid.powerDriver,
        properties: valid.properties,
        resourceClass: valid.resourceClass ?? '',
      },
      [{ uuid: uuidv7(), mac }],
    );
    this.#events.publish({
      nodeUuid: node.uuid,
      type: 'node.created',
      provisionState: node.provisionState,
      powerState: node.powerState,
      details: { mac },
    });
    return node;
  }

  async updateNode(id: string, patch: NodePatch, expectedVersion: number | null): Promise<NodeRecord> {
    const valid = validatePatch(patch);
    const current = await this.getNode(id);
    const { pmPassword, ...rest } = valid;
    const changes: NodeChanges = {
      ...rest,
      ...(pmPassword !== undefined ? { pmPasswordEnc: this.#secrets.encrypt(pmPassword, current.uuid) } : {}),
      // Leaving maintenance clears its reason: a stale reason misleads the next operator.
      ...(valid.maintenance === false && valid.maintenanceReason === undefined ? { maintenanceReason: null } : {}),
    };
    if (Object.keys(changes).length === 0) throw new ValidationError('request', 'nothing to update');
    const node = await this.#store.updateNode(current.uuid, changes, expectedVersion);
    const changed = Object.keys(valid).map((k) => (k === 'pmPassword' ? 'pm_password' : k));
    this.#events.publish({
      nodeUuid: node.uuid,
      type: 'node.updated',
      provisionState: node.provisionState,
      powerState: node.powerState,
      details: { fields: changed.join(',') },
    });
    return node;
  }

  async deleteNode(id: string): Promise<NodeRecord> {
    const current = await this.getNode(id);
    const node = await this.#store.deleteNode(current.uuid, UNDELETABLE_STATES);
    this.#events.publish({ nodeUuid: node.uuid, type: 'node.deleted', provisionState: node.provisionState });
    return node;
  }

  async addPort(nodeId: string, macInput: string): Promise<PortRecord> {
    const node = await this.getNode(nodeId);
    const mac = normalizeMac(macInput);
    // Checked here for every store; the MySQL store checks again under the node's row lock, so racing adds cannot pass it.
    if (node.macs.length >= MAX_PORTS_PER_NODE) throw new TooManyPortsError(node.uuid, MAX_PORTS_PER_NODE);
    const port = await this.#store.createPort({ uuid: uuidv7(), nodeUuid: node.uuid, mac }, MAX_PORTS_PER_NODE);
    this.#events.publish({ nodeUuid: node.uuid, type: 'port.created', details: { port: port.uuid, mac } });
    return port;
  }

  async findPort(id: string): Promise<PortRecord> {
    validateId(id);
    const key = id.includes(':') || id.includes('.') || /^[0-9a-fA-F]{12}$/.test(id) ? normalizeMac(id, 'id') : id;
    const port = await this.#store.findPort(key);
    if (!port) throw new NotFoundError('port', id);
    return port;
  }

  async deletePort(id: string): Promise<PortRecord> {
    const port = await this.findPort(id);
    const node = await this.#store.findNode(port.nodeUuid);
    if (node && node.macs.length <= 1 && node.provisionState !== 'enroll' && node.provisionState !== 'manageable') {
      // A node past enrollment with no port can no longer PXE boot.
      throw new BmError(
        'failed-precondition',
        `port ${port.mac} is the last port of node ${node.uuid} (${node.provisionState}); add another first`,
        { node: node.uuid },
      );
    }
    await this.#store.deletePort(port.uuid);
    this.#events.publish({ nodeUuid: port.nodeUuid, type: 'port.deleted', details: { port: port.uuid, mac: port.mac } });
    return port;
  }
}
