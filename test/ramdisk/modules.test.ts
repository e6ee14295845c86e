/** Module dependencies from .modinfo, and the order busybox insmod loads them in. */
import { describe, expect, it } from 'vitest';
import { loadOrder, modinfoDepends, ModuleError, moduleName } from '../../ramdisk/modules.ts';

const ko = (...strings: string[]): Uint8Array => Buffer.from(`\x7fELF junk\0${strings.join('\0')}\0more junk`, 'latin1');

describe('kernel module closure', () => {
  it('reads depends= from the .modinfo strings, with - and _ alike', () => {
    expect(modinfoDepends(ko('license=GPL', 'depends=virtio,virtio-ring,failover', 'intree=Y'))).toEqual([
      'virtio',
      'virtio_ring',
      'failover',
    ]);
    expect(modinfoDepends(ko('depends=', 'intree=Y'))).toEqual([]);
    expect(modinfoDepends(ko('license=GPL'))).toEqual([]);
    expect(moduleName('kernel/drivers/net/virtio_net.ko')).toBe('virtio_net');
    expect(moduleName('snd-hda.ko.xz')).toBe('snd_hda');
  });

  it('puts every module after what it needs, in the order wanted otherwise, each once', () => {
    const deps: Record<string, string[]> = {
      virtio_net: ['net_failover', 'virtio'],
      net_failover: ['failover'],
      virtio_blk: ['virtio'],
      failover: [],
      virtio: [],
      e1000: [],
    };
    const files = new Map(Object.keys(deps).map((n) => [n, `kernel/${n}.ko`]));
    expect(loadOrder(['virtio_net', 'virtio-blk', 'e1000'], files, (n) => deps[n] ?? [])).toEqual([
      'failover',
      'net_failover',
      'virtio',
      'virtio_net',
      'virtio_blk',
      'e1000',
    ]);
  });

  it('names the module that is missing and who needed it, and a dependency cycle', () => {
    const files = new Map([
      ['a', 'a.ko'],
      ['b', 'b.ko'],
    ]);
    expect(() => loadOrder(['a'], files, (n) => (n === 'a' ? ['c'] : []))).toThrow(/kernel module c: needed by a/);
    expect(() => loadOrder(['a'], files, (n) => (n === 'a' ? ['b'] : ['a']))).toThrow(ModuleError);
    expect(() => loadOrder(['a'], files, (n) => (n === 'a' ? ['b'] : ['a']))).toThrow(/a -> b -> a/);
  });
});
