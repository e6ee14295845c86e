/**
 * Opens a node's BMC for one task: its driver from the factory, its password
 * decrypted here, handed to the driver and never kept. Each way this can fail
 * before a packet is sent is a typed error naming the node and the fix.
 */
import type { Logger } from 'pino';
import { Histogram, type Registry } from 'prom-client';
import { BmError } from '../errors.ts';
import type { PowerControl, PowerControlFactory } from '../drivers/power/index.ts';
import type { NodeStore, NodeRecord } from '../nodes/index.ts';
import type { SecretBox } from '../secrets/index.ts';

/** Where BMC actions are counted and audited; absent in unit tests. */
export interface BmcObserver {
  done(node: NodeRecord, action: string, result: string, ms: number): void;
}

/** Audit lines at info and a duration histogram by driver and result. */
export function bmcObserver(log: Logger, registry: Registry): BmcObserver {
  const seconds = new Histogram({
    name: 'bm_bmc_action_seconds',
    help: 'BMC actions of the conductor by driver and result',
    labelNames: ['driver', 'result'],
    buckets: [0.01, 0.05, 0.2, 1, 5, 20, 60],
    registers: [registry],
  });
  return {
    done(node, action, result, ms) {
      seconds.observe({ driver: node.powerDriver, result: result === 'ok' ? 'ok' : 'error' }, ms / 1000);
      log.info(
        {
          audit: 'bmc',
          node: node.uuid,
          action,
          driver: node.powerDriver,
          bmc: `${node.pmAddress}:${node.pmPort}`,
          result,
          ms: Math.round(ms),
        },
        'bmc action',
      );
    },
  };
}

export class BmcAccess {
  readonly #store: NodeStore;
  readonly #secrets: SecretBox;
  readonly #factory: PowerControlFactory;
  readonly #observer: BmcObserver | null;

  constructor(store: NodeStore, secrets: SecretBox, factory: PowerControlFactory, observer: BmcObserver | null = null) {
    this.#store = store;
    this.#secrets = secrets;
    this.#factory = factory;
    this.#observer = observer;
  }

  async open(node: NodeRecord): Promise<PowerControl> {
    if (!node.pmAddress)
      throw new BmError(
        'failed-precondition',
        `node ${node.uuid} has no BMC address; set it with \`bmctl node update ${node.uuid} --pm-address ...\``,
        { node: node.uuid },
      );
    const sealed = await this.#store.sealedPassword(node.uuid);
    if (!sealed || sealed.length === 0)
      throw new BmError(
        'failed-precondition',
        `node ${node.uuid} has no BMC password; set it with \`BM_PM_PASSWORD=... bmctl node update ${node.uuid}\` (or --pm-password-stdin)`,
        { node: node.uuid },
      );
    let password: string;
    try {
      password = this.#secrets.decrypt(sealed, node.uuid);
    } catch (err) {
      throw new BmError(
        'failed-precondition',
        `node ${node.uuid}: cannot decrypt the BMC password: ${err instanceof Error ? err.message : String(err)}; set it again with \`bmctl node update\``,
        { node: node.uuid },
      );
    }
    return this.#factory({
      nodeUuid: node.uuid,
      driver: node.powerDriver,
      address: node.pmAddress,
      port: node.pmPort,
      username: node.pmUser,
      password,
    });
  }

  /** Runs `work` on the node's BMC; with `action`, the run is audited and counted under that name. */
  async with<T>(node: NodeRecord, work: (control: PowerControl) => Promise<T>, action?: string): Promise<T> {
    const started = performance.now();
    let result = 'ok';
    try {
      const control = await this.open(node);
      try {
        return await work(control);
      } finally {
        await control.close().catch(() => undefined);
      }
    } catch (err) {
      result = err instanceof Error ? err.name : 'error';
      throw err;
    } finally {
      if (action) this.#observer?.done(node, action, result, performance.now() - started);
    }
  }
}
