/**
 * The import check (scripts/check-imports.ts) on small sources placed at real
 * paths of this repository (scripts/test.sh runs it on the repository itself).
 */
import { describe, expect, it } from 'vitest';
import { checkFile } from '../../scripts/check-imports.ts';

const imports = (file: string, specifier: string) => checkFile(file, `import { x } from '${specifier}';\n`);

describe('the public-face import check', () => {
  it('refuses an import past a folder face, naming the file, the import and the index.ts to use', () => {
    const [violation, ...rest] = checkFile(
      'controller/conductor/example.ts',
      `// why\nimport { streamImage } from '../deploy/stream.ts';\n`,
    );
    expect(rest).toEqual([]);
    expect(violation).toMatchObject({ file: 'controller/conductor/example.ts', line: 2, specifier: '../deploy/stream.ts' });
    expect(violation!.message).toContain('controller/deploy/index.ts');
    expect(violation!.message).toContain("'../deploy/index.ts'");
  });

  it('lets a folder import its own files and subfolders, the loose files of enclosing folders, faces and generated code', () => {
    expect(imports('controller/boot/services.ts', './dhcp/server.ts')).toEqual([]);
    expect(imports('controller/boot/dhcp/server.ts', '../config.ts')).toEqual([]);
    expect(imports('controller/nodes/mysql-store.ts', '../errors.ts')).toEqual([]);
    expect(imports('controller/conductor/task.ts', '../nodes/index.ts')).toEqual([]);
    expect(imports('controller/deploy/stream.ts', '../../proto/gen/bm/agent/v1/agent_pb.js')).toEqual([]);
    expect(imports('agent/server/index.ts', '../auth.ts')).toEqual([]);
  });

  it('sends a sibling subfolder through its face too', () => {
    const [violation] = imports('controller/boot/http/server.ts', '../tftp/server.ts');
    expect(violation?.message).toMatch(/has no public face: add controller\/boot\/tftp\/index\.ts/);
  });

  it('asks for a face where a folder has none, at the part below controller/', () => {
    const [violation] = imports('scripts/tool.ts', '../ramdisk/build.ts');
    expect(violation?.message).toContain('add ramdisk/index.ts');
  });

  it('keeps the conductor away from specific power drivers, even through their faces', () => {
    const [violation] = imports('controller/conductor/power.ts', '../drivers/power/ipmi/index.ts');
    expect(violation?.message).toContain('conductor importing a specific power driver');
    expect(violation?.message).toContain("'../drivers/power/index.ts'");
    expect(imports('controller/conductor/power.ts', '../drivers/power/index.ts')).toEqual([]);
    expect(checkFile('controller/drivers/power/index.ts', "export { IpmiDriver } from './ipmi/driver.ts';\n")[0]?.message).toContain(
      're-exports a specific driver',
    );
  });

  it('refuses a driver importing upward, and points a sibling driver at the other driver folder', () => {
    expect(imports('controller/drivers/power/ipmi/driver.ts', '../../../nodes/index.ts')[0]?.message).toContain('driver importing upward');
    expect(imports('controller/drivers/power/ipmi/driver.ts', '../../../errors.ts')).toEqual([]);
    expect(imports('controller/drivers/power/ipmitool/driver.ts', '../ipmi/errors.ts')[0]?.message).toContain(
      'controller/drivers/power/ipmi/index.ts',
    );
  });

  it('keeps agent/ and controller/ apart, and db/ and proto/ below them', () => {
    expect(imports('agent/server/index.ts', '../../controller/errors.ts')[0]?.message).toContain('agent/ never imports controller/ or db/');
    expect(imports('controller/deploy/stream.ts', '../../agent/disk/index.ts')[0]?.message).toContain('controller/ never imports agent/');
    expect(imports('db/schema.ts', '../controller/errors.ts')).toHaveLength(1);
    expect(imports('proto/rpc/client.ts', '../../db/index.ts')).toHaveLength(1);
    expect(imports('test/agent/example.test.ts', '../../controller/errors.ts')).toEqual([]);
  });

  it('lets tests import deep, and refuses product code importing test/', () => {
    expect(imports('test/deploy/deploy.test.ts', '../../controller/deploy/stream.ts')).toEqual([]);
    expect(imports('controller/deploy/stream.test.ts', '../../test/support/counting-proxy.ts')).toEqual([]);
    expect(imports('controller/lab/fleet.ts', '../../test/support/counting-proxy.ts')[0]?.message).toContain('imports test code');
  });

  it('reads dynamic imports and re-exports as imports', () => {
    expect(checkFile('controller/cli/example.ts', "const m = await import('../server/controller.ts');\n")).toHaveLength(1);
    expect(checkFile('controller/cli/example.ts', "export { x } from '../server/controller.ts';\n")).toHaveLength(1);
  });
});
