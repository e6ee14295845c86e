import { execFile } from 'node:child_process';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildConfigDrive, type NetworkData } from '../../agent/configdrive/configdrive.ts';
import { buildIso9660 } from '../../agent/configdrive/iso9660.ts';
import { writeConfigDrive } from '../../agent/configdrive/write.ts';
import { openTarget } from '../../agent/disk/target.ts';
import { withTempDir } from './disk-helpers.ts';

const run = promisify(execFile);

async function tool(command: string, args: readonly string[]): Promise<Buffer> {
  try {
    const { stdout } = await run(command, args, { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`${command} is not installed: apt-get install genisoimage xorriso util-linux`, { cause: error });
    }
    throw error;
  }
}

const isoinfoExtract = async (iso: string, mode: '-J' | '-R', path: string): Promise<string> =>
  (await tool('isoinfo', ['-i', iso, mode, '-x', path])).toString('utf8');

const metadata = {
  uuid: '8f3c2a9e-4b1d-4e6f-9a7b-2c5d8e1f0a3b',
  name: 'web-1',
  hostname: 'web-1.example.org',
  publicKeys: { ops: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example.org' },
  launchIndex: 0,
};
const networkData: NetworkData = {
  links: [{ id: 'port-0', type: 'phy', ethernet_mac_address: '52:54:00:12:34:56', mtu: 1500 }],
  networks: [
    {
      id: 'network0',
      link: 'port-0',
      type: 'ipv4',
      ip_address: '192.0.2.10',
      netmask: '255.255.255.0',
      routes: [{ network: '0.0.0.0', netmask: '0.0.0.0', gateway: '192.0.2.1' }],
    },
  ],
  services: [{ type: 'dns', address: '192.0.2.53' }],
};
const userData = new TextEncoder().encode('#cloud-config\npackages: [nginx]\n');

describe('config drive read by real tools', () => {
  it('isoinfo (Joliet and Rock Ridge), xorriso and blkid read the files and the config-2 label', async () => {
    await withTempDir(async (dir) => {
      const iso = join(dir, 'config-2.iso');
      await writeFile(iso, buildConfigDrive({ metaData: metadata, networkData, userData, recordedAt: new Date('2026-03-04T05:06:07Z') }));

      const info = (await tool('isoinfo', ['-d', '-i', iso])).toString();
      expect(info).toMatch(/^Volume id: config-2$/m);
      expect(info).toMatch(/Joliet with UCS level 3 found/);
      expect(info).toMatch(/Rock Ridge signatures version 1 found/);

      for (const mode of ['-J', '-R'] as const) {
        const meta = JSON.parse(await isoinfoExtract(iso, mode, '/openstack/latest/meta_data.json')) as Record<string, unknown>;
        expect(meta).toMatchObject({
          uuid: metadata.uuid,
          name: 'web-1',
          hostname: 'web-1.example.org',
          launch_index: 0,
          public_keys: metadata.publicKeys,
        });
        expect(meta.keys).toEqual([{ name: 'ops', type: 'ssh', data: metadata.publicKeys.ops }]);
        expect(JSON.parse(await isoinfoExtract(iso, mode, '/openstack/latest/network_data.json'))).toEqual(networkData);
        expect(await isoinfoExtract(iso, mode, '/openstack/latest/user_data')).toBe('#cloud-config\npackages: [nginx]\n');
      }
      // Rock Ridge gives POSIX modes: read-only files and directories.
      expect((await tool('isoinfo', ['-i', iso, '-R', '-l'])).toString()).toMatch(/-r--r--r-- +1 +0 +0 +\d+ .*meta_data\.json/);

      const listing = (await tool('xorriso', ['-indev', iso, '-find', '/', '-type', 'f'])).toString();
      expect(
        listing
          .split('\n')
          .filter((line) => line.startsWith("'"))
          .sort(),
      ).toEqual(["'/openstack/latest/meta_data.json'", "'/openstack/latest/network_data.json'", "'/openstack/latest/user_data'"]);
      const extracted = join(dir, 'extracted.json');
      await tool('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/openstack/latest/network_data.json', extracted]);
      expect(JSON.parse(await readFile(extracted, 'utf8'))).toEqual(networkData);
      await tool('xorriso', ['-indev', iso, '-check_media', '--']);

      // cloud-init finds the drive with blkid by label.
      const probe = (await tool('blkid', ['-p', '-o', 'export', iso])).toString();
      expect(probe).toMatch(/^LABEL=config-2$/m);
      expect(probe).toMatch(/^TYPE=iso9660$/m);
    });
  });

  it('leaves user_data out when there is none, and keeps JSON received as text byte for byte', async () => {
    await withTempDir(async (dir) => {
      const iso = join(dir, 'config-2.iso');
      const metaText = '{"uuid": "u-1", "hostname": "h", "name": "n", "launch_index": 0, "public_keys": {}}';
      const networkText = '{"links": [], "networks": [{"id": "n0", "link": "l0", "type": "ipv4_dhcp"}], "services": []}';
      await writeFile(iso, buildConfigDrive({ metaData: metaText, networkData: networkText }));
      const listing = (await tool('isoinfo', ['-i', iso, '-J', '-f'])).toString().split('\n').filter(Boolean).sort();
      expect(listing).toEqual([
        '/openstack',
        '/openstack/latest',
        '/openstack/latest/meta_data.json',
        '/openstack/latest/network_data.json',
      ]);
      expect(await isoinfoExtract(iso, '-J', '/openstack/latest/meta_data.json')).toBe(metaText);
      expect(await isoinfoExtract(iso, '-R', '/openstack/latest/network_data.json')).toBe(networkText);
    });
  });

  it('refuses meta_data.json that is not JSON or has no uuid', () => {
    expect(() => buildConfigDrive({ metaData: '{not json', networkData: '{}' })).toThrow(/meta_data.json is not JSON/);
    expect(() => buildConfigDrive({ metaData: '{"name": "x"}', networkData: '{}' })).toThrow(/uuid/);
    expect(() => buildConfigDrive({ metaData: '{"uuid": "u"}', networkData: '{"links": 3}' })).toThrow(/links/);
  });

  it('lands at the end of a disk without a partition table, on a 1 MiB boundary, where blkid finds it', async () => {
    await withTempDir(async (dir) => {
      const disk = join(dir, 'disk.img');
      const diskSize = 200 * 1024 * 1024 + 12345 * 512;
      await writeFile(disk, '');
      await truncate(disk, diskSize);
      const drive = buildConfigDrive({ metaData: metadata, networkData });
      const target = await openTarget(disk, { write: true });
      const placement = await writeConfigDrive(target, drive, 100 * 1024 * 1024).finally(() => target.handle.close());
      expect(placement.offset % (1024 * 1024)).toBe(0);
      expect(placement.offset).toBe(Math.floor((diskSize - drive.length) / (1024 * 1024)) * 1024 * 1024);
      expect(placement.offset + drive.length).toBeLessThanOrEqual(diskSize);
      const probe = (await tool('blkid', ['-p', '-o', 'export', '-O', String(placement.offset), disk])).toString();
      expect(probe).toMatch(/^LABEL=config-2$/m);
      const copy = join(dir, 'copy.iso');
      await writeFile(copy, (await readFile(disk)).subarray(placement.offset, placement.offset + drive.length));
      expect(JSON.parse(await isoinfoExtract(copy, '-J', '/openstack/latest/meta_data.json'))).toMatchObject({ uuid: metadata.uuid });
    });
  });
});

describe('ISO 9660 writer read by isoinfo', () => {
  it('a directory of many long names spills over several sectors and every file is still found', async () => {
    await withTempDir(async (dir) => {
      const iso = join(dir, 'many.iso');
      const files = Array.from({ length: 90 }, (_, i) => ({
        path: `content/file-with-a-rather-long-name-${String(i).padStart(3, '0')}.txt`,
        data: new TextEncoder().encode(`file ${i}\n`),
      }));
      await writeFile(iso, buildIso9660({ volumeId: 'many', files }));
      const listed = (await tool('isoinfo', ['-i', iso, '-R', '-f']))
        .toString()
        .split('\n')
        .filter((line) => line.endsWith('.txt'));
      expect(listed).toHaveLength(90);
      for (const i of [0, 45, 89]) {
        const path = `/content/file-with-a-rather-long-name-${String(i).padStart(3, '0')}.txt`;
        expect(await isoinfoExtract(iso, '-J', path)).toBe(`file ${i}\n`);
        expect(await isoinfoExtract(iso, '-R', path)).toBe(`file ${i}\n`);
      }
    });
  });

  it('round-trips arbitrary small trees of lower-case names and contents', async () => {
    await withTempDir(async (dir) => {
      let n = 0;
      const name = fc
        .stringMatching(/^[a-z0-9][a-z0-9_.-]{0,40}$/)
        .filter((value) => !value.endsWith('.') && value !== '.' && value !== '..');
      await fc.assert(
        fc.asyncProperty(
          fc.uniqueArray(fc.tuple(fc.array(name, { minLength: 0, maxLength: 3 }), name), {
            minLength: 1,
            maxLength: 6,
            selector: ([dirs, file]) => [...dirs, file].join('/'),
          }),
          fc.array(fc.uint8Array({ maxLength: 5000 }), { minLength: 6, maxLength: 6 }),
          async (paths, contents) => {
            const files = paths.map(([dirs, file], i) => ({ path: [...dirs, file].join('/'), data: contents[i] ?? new Uint8Array(0) }));
            // A name used both as a file and as a directory, or two names that
            // differ only in case, are refused; the property is about the rest.
            let image: Uint8Array;
            try {
              image = buildIso9660({ volumeId: 'prop', files });
            } catch (error) {
              expect((error as Error).message).toMatch(/both a file and a directory/);
              return;
            }
            const iso = join(dir, `p${n++}.iso`);
            await writeFile(iso, image);
            for (const file of files) {
              const got = await tool('isoinfo', ['-i', iso, '-R', '-x', `/${file.path}`]);
              expect(Buffer.compare(got, Buffer.from(file.data))).toBe(0);
            }
          },
        ),
        { numRuns: 15 },
      );
    });
  }, 60_000);
});
