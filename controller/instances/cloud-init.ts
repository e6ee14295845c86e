/**
 * What cloud-init reads from the config drive (and the metadata service):
 * OpenStack's meta_data.json and network_data.json, built from the instance
 * and the node's ports. Pure: records in, JSON text out.
 */
import type { InstanceRecord } from './types.ts';

export interface CloudInitNode {
  readonly uuid: string;
  readonly group: string;
  readonly macs: readonly string[];
}

export function metaDataJson(instance: InstanceRecord, node: CloudInitNode): string {
  const publicKeys: Record<string, string> = {};
  instance.sshKeys.forEach((key, i) => (publicKeys[`key-${i}`] = key));
  return JSON.stringify({
    uuid: instance.uuid,
    name: instance.name,
    hostname: instance.name,
    project_id: instance.project,
    availability_zone: node.group,
    launch_index: 0,
    public_keys: publicKeys,
    meta: { baremetal_node: node.uuid },
  });
}

/** The seed's net-static template, as network_data.json: the first port static or DHCP, the others DHCP. */
export function networkDataJson(instance: InstanceRecord, node: CloudInitNode): string {
  const links = node.macs.map((mac, i) => ({ id: `port-${i}`, type: 'phy', ethernet_mac_address: mac, mtu: 1500 }));
  const net = instance.network;
  const networks = node.macs.map((_, i) => {
    if (i === 0 && net.mode === 'static') {
      return {
        id: 'network-0',
        type: 'ipv4',
        link: 'port-0',
        ip_address: net.address,
        netmask: net.netmask,
        routes: net.gateway ? [{ network: '0.0.0.0', netmask: '0.0.0.0', gateway: net.gateway }] : [],
        network_id: 'provisioning',
      };
    }
    return { id: `network-${i}`, type: 'ipv4_dhcp', link: `port-${i}`, network_id: 'provisioning' };
  });
  const services = net.mode === 'static' ? (net.dns ?? []).map((address) => ({ type: 'dns', address })) : [];
  return JSON.stringify({ links, networks, services });
}
