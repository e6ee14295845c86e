/** bmctl image ...: the seed's `glance image-create`, with a progress bar and the final sha256. */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { ImageSchema, ImageService, type Image } from '../../proto/gen/bm/v1/image_pb.js';
import type { CreateImageRequestSchema } from '../../proto/gen/bm/v1/image_pb.js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { withApi } from './connection.ts';
import { CliUsageError } from './errors.ts';
import { details, messageJson, printDeleted, printJson, printMessage, table } from './output.ts';
import type { Globals } from './options.ts';

const CHUNK = 1024 * 1024;

function imageRow(i: Image): string[] {
  return [i.uuid, i.name, i.diskFormat, i.status, String(i.size), String(i.virtualSize), i.sha256];
}

export function registerImageCommands(program: Command, globals: Globals): void {
  const image = program.command('image').description('images: upload, list, delete');

  image
    .command('create <file>')
    .description('upload an image (raw, qcow2, aki kernel, ari ramdisk)')
    .requiredOption('--name <name>', 'a unique name')
    .requiredOption('--disk-format <format>', 'raw, qcow2, aki or ari')
    .option('--kernel <id>', 'the aki image this image boots with (sets kernel_id)')
    .option('--ramdisk <id>', 'the ari image this image boots with (sets ramdisk_id)')
    .option('--sha256 <hex>', 'refuse the upload unless the file hashes to this')
    .option(
      '--property <key=value>',
      'extra property (repeatable)',
      (v: string, prev: Record<string, string>) => {
        const eq = v.indexOf('=');
        if (eq <= 0) throw new CliUsageError(`--property takes KEY=VALUE, got "${v}"`);
        return { ...prev, [v.slice(0, eq)]: v.slice(eq + 1) };
      },
      {},
    )
    .action(
      async (
        file: string,
        o: { name: string; diskFormat: string; kernel?: string; ramdisk?: string; sha256?: string; property: Record<string, string> },
      ) => {
        const g = globals();
        const size = await stat(file).then(
          (s) => s.size,
          (err: NodeJS.ErrnoException) => {
            throw new CliUsageError(`cannot read ${file}: ${err.code ?? err.message}`);
          },
        );
        const properties = { ...o.property, ...(o.kernel ? { kernel_id: o.kernel } : {}), ...(o.ramdisk ? { ramdisk_id: o.ramdisk } : {}) };
        const bar =
          process.stderr.isTTY && !g.json
            ? new SingleBar(
                { format: 'upload [{bar}] {percentage}% {value}/{total} MiB {eta_formatted}', hideCursor: true },
                Presets.shades_classic,
              )
            : null;
        bar?.start(Math.max(1, Math.ceil(size / CHUNK)), 0);
        let sent = 0;
        async function* requests(): AsyncIterable<MessageInitShape<typeof CreateImageRequestSchema>> {
          yield { part: { case: 'meta', value: { name: o.name, diskFormat: o.diskFormat, properties, expectedSha256: o.sha256 ?? '' } } };
          for await (const chunk of createReadStream(file, { highWaterMark: CHUNK })) {
            sent += (chunk as Buffer).length;
            bar?.update(Math.ceil(sent / CHUNK));
            yield { part: { case: 'chunk', value: chunk as Buffer } };
          }
        }
        try {
          const created = await withApi(g, (conn) => conn.client(ImageService).createImage(requests()));
          bar?.stop();
          if (g.json) printJson(messageJson(ImageSchema, created));
          else
            process.stdout.write(`${details(messageJson(ImageSchema, created) as Record<string, unknown>)}\nsha256: ${created.sha256}\n`);
        } finally {
          bar?.stop();
        }
      },
    );

  image
    .command('list')
    .description('list images')
    .action(async () => {
      const g = globals();
      const all: Image[] = [];
      await withApi(g, async (conn) => {
        let marker = '';
        do {
          const page = await conn.client(ImageService).listImages({ limit: 1000, marker });
          all.push(...page.images);
          marker = page.nextMarker;
        } while (marker !== '');
      });
      if (g.json) printJson(all.map((i) => messageJson(ImageSchema, i)));
      else process.stdout.write(table(['UUID', 'Name', 'Format', 'Status', 'Size', 'Virtual_Size', 'SHA256'], all.map(imageRow)) + '\n');
    });

  image
    .command('show <id>')
    .description('show one image by uuid or name')
    .action(async (id: string) => {
      const g = globals();
      printMessage(g.json, ImageSchema, await withApi(g, (conn) => conn.client(ImageService).getImage({ id })));
    });

  image
    .command('delete <id>')
    .description('delete an image (refused while another image uses it as kernel or ramdisk)')
    .action(async (id: string) => {
      const g = globals();
      await withApi(g, (conn) => conn.client(ImageService).deleteImage({ id }));
      printDeleted(g.json, 'image', id);
    });
}
