/**
 * The tenant's verbs: boot (validate, schedule, start the deploy), delete,
 * reboot and power. Scoped by the caller's project: a member reaches only
 * its project's instances; an admin reaches all.
 */
import type { FenceView, OwnedNode, Ownership } from '../cluster/index.ts';
import type { Caller } from '../auth/index.ts';
import type { NodeActions, Provisioner } from '../conductor/index.ts';
import { BmError, ValidationError } from '../errors.ts';
import type { FlavorCatalog, FlavorRecord } from '../flavors/index.ts';
import type { ImageCatalog, ImageRecord } from '../images/index.ts';
import { type NodeStore, type NodeRecord, uuidv7 } from '../nodes/index.ts';
import type { ClaimWriter, Scheduler } from '../scheduler/index.ts';
import { LookupCache } from './lookup-cache.ts';
import type { InstanceStore } from './store.ts';
import type { InstanceRecord } from './types.ts';
import { checkInstanceName, checkNetwork, checkSshKeys, checkUserData } from './validate.ts';

export interface BootRequest {
  readonly name: string;
  readonly flavor: string;
  readonly image: string;
  readonly userData: Uint8Array;
  readonly sshKeys: readonly string[];
  readonly network?: { mode: string; address: string; netmask: string; gateway: string; dns: readonly string[] };
}

const GIB = 1024 ** 3;
/** How long a boot may use a flavor or image read by an earlier boot (a deleted image is refused within this). */
const LOOKUP_TTL_MS = 1000;

export class InstanceManager {
  readonly #store: InstanceStore;
  readonly #nodes: NodeStore;
  readonly #flavors: FlavorCatalog;
  readonly #images: ImageCatalog;
  readonly #scheduler: Scheduler;
  readonly #provisioner: Provisioner;
  /** Power and teardown of an instance's node, run here or at the node's owner. */
  readonly #actions: NodeActions;
  readonly #ownership: Ownership | null;
  readonly #controllerId: string;
  readonly #fence: FenceView | undefined;
  readonly #flavorCache = new LookupCache<FlavorRecord>(LOOKUP_TTL_MS);
  readonly #imageCache = new LookupCache<ImageRecord>(LOOKUP_TTL_MS, (image) => image.status === 'active');
  /** One writer for every boot here, so the boots of one claim batch are inserted together. */
  readonly #rowWriter: ClaimWriter<InstanceRecord> = { write: (tx, rows) => this.#store.insertMany(rows, tx) };

  constructor(deps: {
    store: InstanceStore;
    nodes: NodeStore;
    flavors: FlavorCatalog;
    images: ImageCatalog;
    scheduler: Scheduler;
    provisioner: Provisioner;
    actions: NodeActions;
    /** Who owns which node (absent: this controller deploys every node it claims). */
    ownership?: Ownership;
    controllerId: string;
    /** A fenced controller places no instance (its claim would start a deploy it must not run). */
    fence?: FenceView;
  }) {
    this.#store = deps.store;
    this.#nodes = deps.nodes;
    this.#flavors = deps.flavors;
    this.#images = deps.images;
    this.#scheduler = deps.scheduler;
    this.#provisioner = deps.provisioner;
    this.#actions = deps.actions;
    this.#ownership = deps.ownership ?? null;
    this.#controllerId = deps.controllerId;
    this.#fence = deps.fence;
  }

  static scope(caller: Caller): string | null {
    return caller.role === 'admin' ? null : caller.project;
  }

  /** The instance, placed and BUILD, with its node as the claim left it (so the answer needs no re-read). */
  async boot(caller: Caller, req: BootRequest): Promise<{ instance: InstanceRecord; node: NodeRecord }> {
    const name = checkInstanceName(req.name);
    const userData = checkUserData(req.userData);
    const sshKeys = checkSshKeys(req.sshKeys);
    const network = checkNetwork(req.network);
    if (req.flavor === '') throw new ValidationError('flavor', 'is required');
    if (req.image === '') throw new ValidationError('image', 'is required');
    // Both asked at once; a bad flavor is still the error reported when both are bad.
    const flavorLookup = this.#flavorCache.get(req.flavor, (name) => this.#flavors.get(name));
    const imageLookup = this.#imageCache.get(req.image, (name) => this.#images.get(name));
    imageLookup.catch(() => undefined);
    const flavor = await flavorLookup;
    const image = await imageLookup;
    if (image.status !== 'active')
      throw new BmError('failed-precondition', `image ${image.name} is ${image.status}, not active`, { image: image.uuid });
    if (image.diskFormat !== 'raw' && image.diskFormat !== 'qcow2')
      throw new ValidationError(
        'image',
        `image ${image.name} is ${image.diskFormat}: only raw and qcow2 images are deployed (aki/ari are kernels and ramdisks)`,
      );
    if (image.virtualSize > flavor.diskGb * GIB)
      throw new ValidationError(
        'image',
        `image ${image.name} needs ${Math.ceil(image.virtualSize / GIB)} GiB of disk; flavor ${flavor.name} gives ${flavor.diskGb} GiB`,
      );

    const fields = {
      uuid: uuidv7(),
      name,
      project: caller.project,
      flavorUuid: flavor.uuid,
      imageUuid: image.uuid,
      state: 'BUILD' as const,
      progress: 0,
      lastError: null,
      userData,
      sshKeys,
      network,
      address: null,
    };
    // The row is written in the claim's transaction, already on its node (with the rows of the boots claimed in the same
    // batch: one INSERT and one commit for all), and "no valid node" leaves nothing behind to clean up.
    let placed: InstanceRecord | undefined;
    this.#fence?.check();
    // The claim reserves the node for its owner on the hash ring (this controller when no live member serves its group),
    // which then runs the deploy: the one that will also answer its power verbs and take it over if need be.
    const owners = await this.#ownership?.snapshot();
    const holder = owners ? (n: OwnedNode) => owners.ownerOf(n)?.id ?? this.#controllerId : this.#controllerId;
    const claim = await this.#scheduler.claim(flavor, fields.uuid, holder, {
      writer: this.#rowWriter,
      item: (nodeUuid) => {
        const now = new Date();
        placed = { ...fields, nodeUuid, createdAt: now, updatedAt: now };
        return placed;
      },
    });
    if (!placed) throw new BmError('internal', `instance ${fields.uuid} was not written with its claim`);
    try {
      await this.#actions.deploy(claim.node, placed);
    } catch (err) {
      // Its owner could not be told to start it: the node goes back to the pool and no instance is left behind. Unless
      // the owner started it after all (it was slow, or its own sweep found the node): then the boot stands.
      const written = placed;
      if (await this.#scheduler.unclaim(claim, (tx) => this.#store.remove(written.uuid, tx))) throw err;
    }
    return { instance: placed, node: claim.node };
  }

  get(caller: Caller, id: string): Promise<InstanceRecord> {
    return this.#store.get(id, InstanceManager.scope(caller));
  }

  list(caller: Caller, project: string): Promise<InstanceRecord[]> {
    if (caller.role === 'admin') return this.#store.list(project === '' ? null : project);
    if (project !== '' && project !== caller.project)
      throw new BmError('permission-denied', 'a member token lists its own project only', { project: caller.project });
    return this.#store.list(caller.project);
  }

  async delete(caller: Caller, id: string): Promise<InstanceRecord> {
    const instance = await this.get(caller, id);
    if (instance.state === 'DELETING') return instance;
    await this.#actions.undeploy(instance);
    return (await this.#store.find(instance.uuid, null)) ?? { ...instance, state: 'DELETING' };
  }

  async reboot(caller: Caller, id: string, hard: boolean): Promise<InstanceRecord> {
    const instance = await this.#active(caller, id);
    const node = await this.#provisioner.nodeOf(instance);
    if (hard) await this.#actions.setPowerState(node.uuid, 'reboot');
    else {
      // ACPI first, so the OS shuts down cleanly; then on again.
      await this.#actions.setPowerState(node.uuid, 'soft-off');
      await this.#actions.setPowerState(node.uuid, 'on');
    }
    return instance;
  }

  async setPower(caller: Caller, id: string, target: string): Promise<InstanceRecord> {
    if (target !== 'on' && target !== 'off') throw new ValidationError('target', 'must be on or off');
    const instance = await this.#active(caller, id);
    const node = await this.#provisioner.nodeOf(instance);
    await this.#actions.setPowerState(node.uuid, target);
    return instance;
  }

  async #active(caller: Caller, id: string): Promise<InstanceRecord> {
    const instance = await this.get(caller, id);
    if (instance.state !== 'ACTIVE')
      throw new BmError('failed-precondition', `instance ${instance.uuid} is ${instance.state}; power verbs need ACTIVE`, {
        instance: instance.uuid,
      });
    return instance;
  }
}
