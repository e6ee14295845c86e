import { describe, expect, it } from 'vitest';
import { kernelArchFromNode, parseCpuinfo } from './cpu.ts';
import { normaliseWwn, parseVpdPage80 } from './disks.ts';
import { parseMemTotalBytes } from './memory.ts';

describe('inventory parsers', () => {
  it('counts processors and takes model and flags from x86 cpuinfo', () => {
    const text =
      'processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu lm sse2\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu lm sse2\n';
    expect(parseCpuinfo(text)).toEqual({ count: 2, model: 'Intel(R) Xeon(R)', flags: ['fpu', 'lm', 'sse2'], archHint: 'x86_64' });
  });

  it('reads arm64 cpuinfo: Features for flags, the architecture from "CPU architecture: 8"', () => {
    const text = 'processor\t: 0\nFeatures\t: fp asimd\nCPU architecture: 8\n\nprocessor\t: 1\nFeatures\t: fp asimd\nCPU architecture: 8\n';
    expect(parseCpuinfo(text)).toEqual({ count: 2, model: '', flags: ['fp', 'asimd'], archHint: 'aarch64' });
  });

  it('maps Node architecture names to the kernel names', () => {
    expect(kernelArchFromNode('x64')).toBe('x86_64');
    expect(kernelArchFromNode('arm64')).toBe('aarch64');
    expect(kernelArchFromNode('mips')).toBe('mips');
  });

  it('reads MemTotal in KiB', () => {
    expect(parseMemTotalBytes('MemTotal:        4013412 kB\nMemFree:  1 kB\n')).toBe(4013412 * 1024);
    expect(parseMemTotalBytes('MemFree: 1 kB\n')).toBeUndefined();
  });

  it('reads the serial of VPD page 0x80 and ignores other pages', () => {
    expect(parseVpdPage80(Uint8Array.of(0, 0x80, 0, 6, 0x5a, 0x43, 0x31, 0x38, 0x20, 0x20))).toBe('ZC18');
    expect(parseVpdPage80(Uint8Array.of(0, 0x83, 0, 2, 0x41, 0x42))).toBeUndefined();
    expect(parseVpdPage80(Uint8Array.of(0, 0x80))).toBeUndefined();
  });

  it('spells NAA WWNs as udev does and leaves other wwids alone', () => {
    expect(normaliseWwn('naa.5000C500B1C2D3E4')).toBe('0x5000c500b1c2d3e4');
    expect(normaliseWwn('eui.0025388b91b2c3d4')).toBe('eui.0025388b91b2c3d4');
    expect(normaliseWwn(undefined)).toBe('');
  });
});
