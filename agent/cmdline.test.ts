import { describe, expect, it } from 'vitest';
import { Metadata } from '@grpc/grpc-js';
import { bearerToken, tokenMatches } from './auth.ts';
import { controllerTarget, mergeParams, parseKernelParams, splitCmdline } from './cmdline.ts';
import { controllerTls } from './controller-tls.ts';

describe('kernel command line', () => {
  it('reads bm.controller, bm.node, bm.token and bm.purpose as the iPXE script writes them', () => {
    const line =
      'BOOT_IMAGE=/vmlinuz initrd=initrd bm.controller=http://10.0.0.1:6386 bm.purpose=deploy bm.node=0190a8c0-0000-7000-8000-000000000001 bm.token=bma_abcDEF-_123456789 console=ttyS0 quiet\n';
    expect(parseKernelParams(line)).toEqual({
      controller: 'http://10.0.0.1:6386',
      purpose: 'deploy',
      nodeUuid: '0190a8c0-0000-7000-8000-000000000001',
      token: 'bma_abcDEF-_123456789',
    });
  });

  it('lets the last occurrence win, ignores empty values and groups double-quoted words', () => {
    expect(parseKernelParams('bm.node=a bm.node=b bm.token= x="y z"')).toEqual({ nodeUuid: 'b' });
    expect(splitCmdline('a="b c" d  e')).toEqual(['a=b c', 'd', 'e']);
    expect(parseKernelParams('')).toEqual({});
  });

  it('lets flags override the environment and the environment override the command line, field by field', () => {
    expect(mergeParams({ controller: 'c1', token: 't1', nodeUuid: 'n1' }, { token: 't2' }, { controller: 'c3' })).toEqual({
      controller: 'c3',
      token: 't2',
      nodeUuid: 'n1',
    });
  });

  it('turns controller URLs into gRPC targets with the default port', () => {
    expect(controllerTarget('http://10.0.0.1:6385')).toBe('10.0.0.1:6385');
    expect(controllerTarget('grpc://ctl.example/')).toBe('ctl.example:6385');
    expect(controllerTarget('127.0.0.1:7000')).toBe('127.0.0.1:7000');
    expect(controllerTarget('[fd00::1]')).toBe('[fd00::1]:6385');
    expect(() => controllerTarget('http://')).toThrow(/names no host/);
  });
});

describe('controller TLS from the command line', () => {
  const sha = 'AB'.repeat(32);
  it('pins the CA named by bm.ca and bm.ca_url; https alone uses the system CAs; http is plaintext', () => {
    const params = parseKernelParams(`bm.controller=https://10.0.0.1:6385 bm.ca=${sha} bm.ca_url=http://10.0.0.1:6386/ca.pem`);
    expect(params).toMatchObject({ ca: sha, caUrl: 'http://10.0.0.1:6386/ca.pem' });
    expect(controllerTls(params)).toEqual({ kind: 'pinned', sha256: sha.toLowerCase(), url: 'http://10.0.0.1:6386/ca.pem' });
    expect(controllerTls({ controller: 'https://10.0.0.1:6385' })).toEqual({ kind: 'system' });
    expect(controllerTls({ controller: 'http://10.0.0.1:6385' })).toEqual({ kind: 'plaintext' });
  });

  it('refuses a malformed fingerprint, or one without a place to fetch the CA', () => {
    expect(() => controllerTls({ ca: 'abc', caUrl: 'http://x/ca.pem' })).toThrow(/64 hex digits/);
    expect(() => controllerTls({ ca: sha })).toThrow(/needs bm\.ca_url=/);
    expect(() => controllerTls({ ca: sha, caUrl: 'file:///etc/ca.pem' })).toThrow(/http\(s\) URL/);
  });
});

describe('agent token check', () => {
  const md = (...values: string[]): Metadata => {
    const m = new Metadata();
    for (const v of values) m.add('authorization', v);
    return m;
  };
  it('takes exactly one bearer token and compares it in constant time', () => {
    expect(bearerToken(md('Bearer bma_x'))).toBe('bma_x');
    expect(bearerToken(md('Basic abc'))).toBeUndefined();
    expect(bearerToken(md('Bearer a', 'Bearer b'))).toBeUndefined();
    expect(bearerToken(md())).toBeUndefined();
    expect(tokenMatches('bma_x', 'bma_x')).toBe(true);
    expect(tokenMatches('bma_x', 'bma_y')).toBe(false);
    expect(tokenMatches(undefined, 'bma_x')).toBe(false);
    expect(tokenMatches('bma_x', undefined)).toBe(false);
  });
});
