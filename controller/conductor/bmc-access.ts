/**
 * Opens a node's BMC for one task: its driver from the factory, its password
 * decrypted here, handed to the driver and never kept. Each way this can fail
 * before a packet is sent is a typed error naming the node and the fix.
 */
import { BmError } from '../errors.ts';
import type { PowerControl, PowerControlFactory } from '../drivers/power/types.ts';
import type { NodeStore } from '../nodes/store.ts';
import type { NodeRecord } from '../nodes/types.ts';
import type { SecretBox } from '../secrets/secret-box.ts';

export class BmcAccess {
  readonly #store: NodeStore;
  readonly #secrets: SecretBox;
  readonly #factory: PowerControlFactory;

  constructor(store: NodeStore, secrets: SecretBox, factory: PowerControlFactory) {
    this.#store = store;
    this.#secrets = secrets;
    this.#factory = factory;
  }

  async open(node: NodeRecord): Promise<PowerControl> {
    if (!node.pmAddress) throw new BmError('failed-precondition', `node ${node.uuid} has no BMC address; set it with \`bmctl node update ${node.uuid} --pm-address ...\``, { node: node.uuid });
    const sealed = await this.#store.sealedPassword(node.uuid);
    if (!sealed || sealed.length === 0) throw new BmError('failed-precondition', `node ${node.uuid} has no BMC password; set it with \`BM_PM_PASSWORD=... bmctl node update ${node.uuid}\` (or --pm-password-stdin)`, { node: node.uuid });
    let password: string;
    try {
      password = this.#secrets.decrypt(sealed, node.uuid);
    } catch (err) {
      throw new BmError('failed-precondition', `node ${node.uuid}: cannot decrypt the BMC password: ${err instanceof Error ? err.message : String(err)}; set it again with \`bmctl node update\``, { node: node.uuid });
    }
    return this.#factory({ nodeUuid: node.uuid, driver: node.powerDriver, address: node.pmAddress, port: node.pmPort, username: node.pmUser, password });
  }

  async with<T>(node: NodeRecord, work: (control: PowerControl) => Promise<T>): Promise<T> {
    const control = await this.open(node);
    try {
      return await work(control);
    } finally {
      await control.close().catch(() => undefined);
    }
  }
}
