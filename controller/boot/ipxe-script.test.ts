import { describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { planBoot, type NodeBootState } from './boot-plan.ts';
import { bootConfigSchema } from './config.ts';
import { renderIpxeScript } from './ipxe-script.ts';

const config = {
  httpBase: 'http://10.0.0.1:6386',
  controllerUrl: 'http://10.0.0.1:6386',
  defaultKernel: 'deploy/vmlinuz',
  defaultRamdisk: 'deploy/initrd',
  discovery: false,
  kernelArgs: ['console=ttyS0'],
};
const node = (provisionState: NodeBootState['provisionState']): NodeBootState => ({
  nodeUuid: '0f0e0d0c-0b0a-4908-8706-050403020100',
  provisionState,
  agentToken: 'tok_abcdefghijklmnop',
  deployKernel: null,
  deployRamdisk: null,
});

describe('iPXE script renderer', () => {
  it('boots the deploy ramdisk with controller URL, node uuid and agent token while deploying', () => {
    expect(renderIpxeScript(planBoot(node('deploying'), config)!)).toBe(
      [
        '#!ipxe',
        'echo Booting the deploy ramdisk for node 0f0e0d0c-0b0a-4908-8706-050403020100',
        'kernel --name kernel http://10.0.0.1:6386/images/deploy/vmlinuz initrd=initrd bm.controller=http://10.0.0.1:6386 bm.purpose=deploy bm.node=0f0e0d0c-0b0a-4908-8706-050403020100 bm.token=tok_abcdefghijklmnop console=ttyS0 BOOTIF=01-${netX/mac:hexhyp} || goto retry',
        'initrd --name initrd http://10.0.0.1:6386/images/deploy/initrd || goto retry',
        'boot || goto retry',
        ':retry',
        'echo Network boot failed, retrying in 10 seconds',
        'sleep 10',
        'reboot',
        '',
      ].join('\n'),
    );
  });

  it('uses the flavor kernel/ramdisk when set, and marks cleaning and inspecting', () => {
    const s = renderIpxeScript(planBoot({ ...node('cleaning'), deployKernel: 'img/k1', deployRamdisk: 'img/r1' }, config)!);
    expect(s).toContain('images/img/k1 ');
    expect(s).toContain('images/img/r1 ');
    expect(s).toContain('bm.purpose=clean');
    expect(renderIpxeScript(planBoot(node('inspecting'), config)!)).toContain('bm.purpose=inspect');
  });

  it('boots the local disk when active, and nothing in other states', () => {
    const s = renderIpxeScript(planBoot(node('active'), config)!);
    expect(s).toContain('sanboot --no-describe --drive 0x80');
    expect(s).toContain('exit');
    expect(s).not.toContain('kernel');
    expect(planBoot(node('other'), config)).toBeNull();
  });

  it('boots unknown MACs into discovery only when discovery is on', () => {
    expect(planBoot(null, config)).toBeNull();
    const s = renderIpxeScript(planBoot(null, { ...config, discovery: true })!);
    expect(s).toContain('bm.purpose=discovery');
    expect(s).not.toContain('bm.node=');
    expect(s).not.toContain('bm.token=');
  });

  it('refuses values that could inject iPXE commands or kernel arguments', () => {
    const plan = planBoot(node('deploying'), config)!;
    if (plan.kind !== 'ramdisk') throw new Error('expected ramdisk');
    expect(() => renderIpxeScript({ ...plan, agentToken: 'abc def\nshell' })).toThrow(ValidationError);
    expect(() => renderIpxeScript({ ...plan, kernelUrl: 'http://x/${net0/mac}' })).toThrow(ValidationError);
    expect(() => renderIpxeScript({ ...plan, kernelArgs: ['a b'] })).toThrow(ValidationError);
  });
});

describe('iPXE script with API TLS on', () => {
  const sha256 = 'ab'.repeat(32);
  const tlsConfig = {
    ...config,
    controllerUrl: 'https://10.0.0.1:6385',
    agentCa: { pem: Buffer.from('-----BEGIN CERTIFICATE-----\n'), sha256 },
  };

  it('pins the CA by its sha256 and says where the boot port serves it', () => {
    const script = renderIpxeScript(planBoot(node('deploying'), tlsConfig)!);
    expect(script).toContain(`bm.controller=https://10.0.0.1:6385`);
    expect(script).toContain(`bm.ca=${sha256}`);
    expect(script).toContain(`bm.ca_url=${config.httpBase}/ca.pem`);
    expect(renderIpxeScript(planBoot(node('deploying'), config)!)).not.toContain('bm.ca');
  });

  it('refuses a fingerprint that is not 64 hex digits', () => {
    const plan = planBoot(node('deploying'), tlsConfig)!;
    if (plan.kind !== 'ramdisk' || !plan.ca) throw new Error('expected a pinned ramdisk plan');
    expect(() => renderIpxeScript({ ...plan, ca: { url: plan.ca!.url, sha256: `${sha256} evil=1` } })).toThrow(ValidationError);
  });
});

describe('boot config fragment', () => {
  it('fills defaults and coerces environment strings', () => {
    const c = bootConfigSchema.parse({
      server_address: '10.0.0.1',
      range_start: '10.0.0.100',
      range_end: '10.0.0.200',
      discovery: 'true',
      dns: '10.0.0.1, 10.0.0.2',
      http_port: '7000',
    });
    expect(c).toMatchObject({
      mode: 'full',
      discovery: true,
      dns: ['10.0.0.1', '10.0.0.2'],
      http_port: 7000,
      tftp_port: 69,
      ipxe_bios: 'undionly.kpxe',
      ipxe_efi: 'ipxe.efi',
    });
  });

  it('names the key that is wrong', () => {
    const bad = (input: Record<string, unknown>): string => {
      const r = bootConfigSchema.safeParse(input);
      if (r.success) throw new Error('expected failure');
      return r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    };
    expect(bad({ server_address: '10.0.0.1' })).toMatch(/range_start: required when mode is "full"/);
    expect(bad({ server_address: '10.0.0.1', range_start: '10.1.0.1', range_end: '10.1.0.9' })).toMatch(
      /range_start: the range must lie in 10\.0\.0\.0\/255\.255\.255\.0/,
    );
    expect(bad({ server_address: '10.0.0.300', mode: 'proxy' })).toMatch(/server_address: expected a dotted IPv4 address/);
    expect(bad({ server_address: '10.0.0.1', mode: 'proxy', netmask: '255.0.255.0' })).toMatch(/netmask/);
    expect(bad({ server_address: '10.0.0.1', mode: 'bogus' })).toMatch(/mode/);
    expect(bootConfigSchema.parse({ server_address: '10.0.0.1', mode: 'proxy' }).mode).toBe('proxy');
  });
});
