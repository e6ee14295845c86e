/**
 * The actions a controller executes on a node (its BMC, its provision
 * flows), as the API and the instance verbs ask for them. `LocalNodeActions`
 * runs them here; `NodeRouter` (node-router.ts) is the one place that decides
 * whether they run here or at the node's owner. An owner answering a
 * forwarded action runs `LocalNodeActions` through `forwardedActionHandler`.
 */
import type { Logger } from 'pino';
import type { ForwardAction, ForwardArgs, ForwardResults, ForwardHandler } from '../cluster/index.ts';
import type { BootDeviceSetting } from '../drivers/power/index.ts';
import { NotFoundError } from '../errors.ts';
import type { InstanceStore, InstanceRecord } from '../instances/index.ts';
import type { NodeStore, NodeRecord } from '../nodes/index.ts';
import type { PowerConductor } from './power.ts';
import type { Provisioner } from './provisioner.ts';

export interface NodeActions {
  /** `id`: a node uuid or name. Answers the node as the action left it. */
  setPowerState(id: string, target: string): Promise<NodeRecord>;
  powerState(id: string): Promise<string>;
  setBootDevice(id: string, device: string, persistent: boolean, uefi: boolean): Promise<BootDeviceSetting>;
  bootDevice(id: string): Promise<BootDeviceSetting>;
  /** Answers the node after the verb's first transition (its work goes on in the background). */
  provision(id: string, verb: string): Promise<NodeRecord>;
  /** Tears the instance down (cancelling its deploy if it runs where this lands). */
  undeploy(instance: InstanceRecord): Promise<void>;
  /** Starts the deploy of a node the scheduler just claimed, at the controller the claim made its holder. */
  deploy(node: NodeRecord, instance: InstanceRecord): Promise<void>;
}

export class LocalNodeActions implements NodeActions {
  readonly #power: PowerConductor;
  readonly #provisioner: Provisioner;

  constructor(power: PowerConductor, provisioner: Provisioner) {
    this.#power = power;
    this.#provisioner = provisioner;
  }

  setPowerState(id: string, target: string): Promise<NodeRecord> {
    return this.#power.setPowerState(id, target);
  }

  powerState(id: string): Promise<string> {
    return this.#power.powerState(id);
  }

  setBootDevice(id: string, device: string, persistent: boolean, uefi: boolean): Promise<BootDeviceSetting> {
    return this.#power.setBootDevice(id, device, persistent, uefi);
  }

  bootDevice(id: string): Promise<BootDeviceSetting> {
    return this.#power.bootDevice(id);
  }

  provision(id: string, verb: string): Promise<NodeRecord> {
    return this.#provisioner.provision(id, verb);
  }

  undeploy(instance: InstanceRecord): Promise<void> {
    return this.#provisioner.undeploy(instance);
  }

  async deploy(node: NodeRecord, instance: InstanceRecord): Promise<void> {
    this.#provisioner.startClaimed(node, instance);
  }
}

/** What the owner runs for a forwarded action: the same local code the API would have called. */
export function forwardedActionHandler(local: LocalNodeActions, nodes: NodeStore, instances: InstanceStore, log: Logger): ForwardHandler {
  const run = async (action: ForwardAction, args: ForwardArgs[ForwardAction]): Promise<ForwardResults[ForwardAction]> => {
    switch (action) {
      case 'power-set': {
        const a = args as ForwardArgs['power-set'];
        await local.setPowerState(a.node, a.target);
        return null;
      }
      case 'power-get':
        return { powerState: await local.powerState((args as ForwardArgs['power-get']).node) };
      case 'boot-device-set': {
        const a = args as ForwardArgs['boot-device-set'];
        const s = await local.setBootDevice(a.node, a.device, a.persistent, a.uefi);
        return { device: s.device, persistent: s.persistent, uefi: s.uefi };
      }
      case 'boot-device-get': {
        const s = await local.bootDevice((args as ForwardArgs['boot-device-get']).node);
        return { device: s.device, persistent: s.persistent, uefi: s.uefi };
      }
      case 'provision': {
        const a = args as ForwardArgs['provision'];
        await local.provision(a.node, a.verb);
        return null;
      }
      case 'undeploy': {
        const id = (args as ForwardArgs['undeploy']).instance;
        // Unscoped: the receiving controller already checked that its caller may reach this instance.
        const instance = await instances.find(id, null);
        if (!instance) throw new NotFoundError('instance', id);
        await local.undeploy(instance);
        return null;
      }
      case 'deploy': {
        const a = args as ForwardArgs['deploy'];
        // Both at once: the claiming controller's answer to its boot waits for this.
        const [node, instance] = await Promise.all([nodes.findNode(a.node), instances.find(a.instance, null)]);
        if (!node) throw new NotFoundError('node', a.node);
        if (!instance) throw new NotFoundError('instance', a.instance);
        await local.deploy(node, instance);
        return null;
      }
    }
  };
  return (async (action, args, from) => {
    const started = performance.now();
    try {
      const result = await run(action, args);
      log.info({ forwarded: action, from, args, result: 'ok', ms: Math.round(performance.now() - started) }, 'ran a forwarded action');
      return result;
    } catch (err) {
      log.info(
        { forwarded: action, from, args, result: err instanceof Error ? err.name : 'error', ms: Math.round(performance.now() - started) },
        'forwarded action failed',
      );
      throw err;
    }
  }) as ForwardHandler;
}
