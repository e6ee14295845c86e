/** Runs qemu-img/qemu-io for the image tests; a missing binary fails with how to install it. */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function qemu(tool: 'qemu-img' | 'qemu-io', args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run(tool, args, { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') {
      throw new Error(`${tool} is not installed: apt-get install -y qemu-utils`);
    }
    throw err;
  }
}

export async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
