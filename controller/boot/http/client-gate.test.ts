import { describe, expect, it } from 'vitest';
import { bootConfigSchema } from '../config.ts';
import { MemoryBootBackend } from '../memory-backend.ts';
import { bootClientGate } from '../services.ts';
import { clientIpv4, LeaseGate, NetworkGate, parseCidr } from './client-gate.ts';

const base = { server_address: '10.20.0.1', tftp_root: '/tmp', http_root: '/tmp' };

describe('who may fetch boot kernels and ramdisks', () => {
  it('in mode off or proxy, defaults to the server address network', async () => {
    for (const mode of ['off', 'proxy'] as const) {
      const gate = bootClientGate(bootConfigSchema.parse({ ...base, mode, netmask: '255.255.254.0' }), new MemoryBootBackend());
      expect(gate).toBeInstanceOf(NetworkGate);
      expect(gate.rule).toBe('address in 10.20.0.0/23');
      expect(await gate.allows('10.20.1.77')).toBe(true);
      expect(await gate.allows('10.20.2.1')).toBe(false);
      expect(await gate.allows('not-an-ip')).toBe(false);
    }
  });

  it('takes the configured provisioning networks instead, from a list or a comma-separated variable', async () => {
    const config = bootConfigSchema.parse({ ...base, mode: 'off', provisioning_networks: '10.30.0.0/16, 192.168.5.0/24' });
    const gate = bootClientGate(config, new MemoryBootBackend());
    expect(await gate.allows('10.30.200.1')).toBe(true);
    expect(await gate.allows('192.168.5.9')).toBe(true);
    expect(await gate.allows('10.20.0.5')).toBe(false);
  });

  it('refuses a malformed network with an error naming the key', () => {
    const parsed = bootConfigSchema.safeParse({ ...base, mode: 'off', provisioning_networks: ['10.0.0.0/33'] });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.path).toEqual(['provisioning_networks', 0]);
    expect(parseCidr('300.1.1.1/8')).toBeNull();
  });

  it('in full mode, asks the lease store, and never remembers a refusal', async () => {
    const leases = new MemoryBootBackend();
    const gate = bootClientGate(
      bootConfigSchema.parse({ ...base, mode: 'full', range_start: '10.20.0.10', range_end: '10.20.0.20' }),
      leases,
    );
    expect(gate).toBeInstanceOf(LeaseGate);
    expect(await gate.allows('10.20.0.10')).toBe(false);
    await leases.commitLease({ mac: '52:54:00:00:00:01', ip: '10.20.0.10', expiresAt: Date.now() + 60_000 });
    expect(await gate.allows('10.20.0.10')).toBe(true);
    // The server's own network is no pass in full mode.
    expect(await gate.allows('10.20.0.11')).toBe(false);
  });

  it('reads IPv4 peers, including IPv4-mapped IPv6', () => {
    expect(clientIpv4('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(clientIpv4('10.1.2.3')).toBe('10.1.2.3');
    expect(clientIpv4('fe80::1')).toBeNull();
    expect(clientIpv4(undefined)).toBeNull();
  });
});
